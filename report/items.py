"""Every result and figure the two reports show: where it lives and which command makes it.

An item is a file under the report folder (``report/`` by default): a JSON written by one of
the tools (``--json``), or a PNG figure. When the file is missing the report shows a framed
"pending" box naming it and the command below, and the build lists it at the end.
"""
from typing import NamedTuple, Tuple


class Item(NamedTuple):
    key: str        # how the .typ sources refer to it: items.at("p1.score")
    kind: str       # "json" or "png"
    path: str       # relative to the report folder
    title: str      # what it is, for the pending box and the pending list
    command: str    # the exact command that makes it, run from the repository root
    needs: str      # what the command needs beyond this repository ("" = nothing)
    report: str     # "hw2" or "lab6"


P1_OUT = "/tmp/hw2_p1_out"
P2_OUT = "/tmp/hw2_p2_out"
P3_OUT = "/tmp/hw2_p3_out"
P3_MULTI = "/tmp/hw2_p3_multi"
QUALITY_SPECS = "dpm++:20:2:0 dpm++:20:4:0 dpm++:20:2:20 dpm++:20:4:5 ddim:50:4:5"
LAB6_EVALUATOR = "checkpoint.pth"

P1_SCORE = (f"bash hw2_1.sh {P1_OUT} && python3 -m p1.score {P1_OUT} "
            "--json report/results/p1/score.json")
P1_FIGURES = "python3 -m p1.figures report/figures"
P1_QUALITY = ("python3 -m p1.benchmark quality --per-class 10 --specs "
              f"{QUALITY_SPECS} --guidance 4 --json report/results/p1/benchmark_quality.json")
P1_LOSS = ("python3 -m p1.train --data hw2_data/digits --out runs/p1 ... (README, Problem 1) && "
           "cp runs/p1/loss_curve.png report/results/p1/loss_curve.png")
P2_MSE = (f"bash hw2_2.sh hw2_data/face/noise {P2_OUT} hw2_data/face/UNet.pt && "
          f"python3 -m p2.mse {P2_OUT} hw2_data/face/GT --json report/results/p2/mse.json")
P2_ETA = ("python3 -m p2.figures eta-grid hw2_data/face/noise hw2_data/face/UNet.pt "
          "report/figures/p2_eta_grid.png")
P2_INTERP = ("python3 -m p2.figures interpolation hw2_data/face/noise hw2_data/face/UNet.pt "
             "report/figures/p2_interpolation.png")
P2_NORMS = ("python3 -m p2.interpolation_norms [hw2_data/face/noise] "
            "--json report/results/p2/interpolation_norms.json")
P3_ZEROSHOT = ("python3 -m p3.zeroshot hw2_data/clip_zeroshot/val "
               "hw2_data/clip_zeroshot/id2label.json --clip CLIP_DIR "
               "--figure report/figures/p3_zeroshot.png --json report/results/p3/zeroshot.json")
P3_SCORE = (f"rm -rf {P3_OUT} && "
            f"bash hw2_3.sh hw2_data/textual_inversion/input.json {P3_OUT} sd-v1-4.ckpt && "
            "python3 -m p3.score --json hw2_data/textual_inversion/input.json --src "
            f"hw2_data/textual_inversion --out {P3_OUT} --clip CLIP_DIR "
            "--json-out report/results/p3/score.json")
P3_PROMPTS = '"a <new1> next to a <new2>" "a <new1> in the style of <new2>"'
P3_MULTI_CMD = (f"rm -rf {P3_MULTI} && "
                f"python3 -m p3.generate_prompt {P3_PROMPTS} --ckpt sd-v1-4.ckpt --out "
                f"{P3_MULTI} && cp {P3_MULTI}/grid.png report/figures/p3_multi.png")
LAB6 = ("python3 -m p1.iclevr report/results/lab6/{name} --evaluator checkpoint.pth{extra}")
LAB6_GUIDE = " --classifier-guidance 20 --guide-classifier p1/iclevr/guide_iclevr.pt"
LAB6_DDPM = LAB6.format(name="ddpm", extra=" --guidance 4" + LAB6_GUIDE)
LAB6_GAN = ("python3 -m p1.iclevr report/results/lab6/gan --model gan --evaluator checkpoint.pth"
            " && python3 -m p1.iclevr.compare report/results/lab6/ddpm report/results/lab6/gan "
            "--json report/results/lab6/ddpm_vs_gan.json "
            "--figure report/results/lab6/ddpm_vs_gan.png")

# Extra Lab 6 experiments: (folder name under results/lab6, extra flags, what it varies)
LAB6_ABLATIONS: Tuple[Tuple[str, str, str], ...] = (
    ("cfg4", " --guidance 4", "classifier-free guidance 4 alone"),
    ("cfg2", " --guidance 2", "classifier-free guidance 2"),
    ("cfg6", " --guidance 6", "classifier-free guidance 6"),
    ("cfg4_guide40", " --guidance 4 --classifier-guidance 40 --guide-classifier "
     "p1/iclevr/guide_iclevr.pt", "CFG 4 + our guide classifier 40"),
    ("cfg4_eg1", " --guidance 4 --classifier-guidance 1", "CFG 4 + evaluator guidance 1"),
    ("cfg4_eg5", " --guidance 4 --classifier-guidance 5", "CFG 4 + evaluator guidance 5"),
)

ITEMS = (
    Item("p1.score", "json", "results/p1/score.json",
         "P1 accuracies of the 1000 images of hw2_1.sh", P1_SCORE, "", "hw2"),
    Item("p1.quality", "json", "results/p1/benchmark_quality.json",
         "P1 sampler and guidance table", P1_QUALITY, "", "hw2"),
    Item("p1.grid_mnistm", "png", "figures/grid_mnistm.png", "P1 MNIST-M 10x10 grid",
         P1_FIGURES, "", "hw2"),
    Item("p1.grid_svhn", "png", "figures/grid_svhn.png", "P1 SVHN 10x10 grid", P1_FIGURES, "",
         "hw2"),
    Item("p1.reverse", "png", "figures/reverse_process.png", "P1 reverse process of the first 0",
         P1_FIGURES, "", "hw2"),
    Item("p1.loss", "png", "results/p1/loss_curve.png", "P1 training loss curve", P1_LOSS,
         "a training run (its loss_curve.png)", "hw2"),
    Item("p2.mse", "json", "results/p2/mse.json", "P2 MSE against the ground truth", P2_MSE,
         "UNet.pt, the noises and GT", "hw2"),
    Item("p2.eta_grid", "png", "figures/p2_eta_grid.png", "P2 eta grid", P2_ETA,
         "UNet.pt and the noises", "hw2"),
    Item("p2.interpolation", "png", "figures/p2_interpolation.png",
         "P2 slerp vs linear interpolation", P2_INTERP, "UNet.pt and the noises", "hw2"),
    Item("p2.norms", "json", "results/p2/interpolation_norms.json",
         "P2 norms of interpolated noises", P2_NORMS, "", "hw2"),
    Item("p3.zeroshot", "json", "results/p3/zeroshot.json", "P3 CLIP zero-shot accuracy",
         P3_ZEROSHOT, "CLIP ViT-B/32 weights and clip_zeroshot/val", "hw2"),
    Item("p3.zeroshot_fig", "png", "figures/p3_zeroshot.png",
         "P3 zero-shot successes and failures", P3_ZEROSHOT,
         "CLIP ViT-B/32 weights and clip_zeroshot/val", "hw2"),
    Item("p3.score", "json", "results/p3/score.json", "P3 CLIP scores of hw2_3.sh", P3_SCORE,
         "sd-v1-4.ckpt, learned embeddings, CLIP ViT-B/32", "hw2"),
    Item("p3.multi", "png", "figures/p3_multi.png", "P3 multi-concept images", P3_MULTI_CMD,
         "sd-v1-4.ckpt and learned embeddings of <new1> and <new2>", "hw2"),
    Item("lab6.accuracy", "json", "results/lab6/ddpm/accuracy.json",
         "Lab 6 accuracies (evaluator output)", LAB6_DDPM, "an evaluator (checkpoint.pth)",
         "lab6"),
    Item("lab6.test_grid", "png", "results/lab6/ddpm/test_grid.png", "Lab 6 test.json grid",
         LAB6_DDPM, "", "lab6"),
    Item("lab6.new_test_grid", "png", "results/lab6/ddpm/new_test_grid.png",
         "Lab 6 new_test.json grid", LAB6_DDPM, "", "lab6"),
    Item("lab6.denoise", "png", "results/lab6/ddpm/denoise.png", "Lab 6 denoising process",
         LAB6_DDPM, "", "lab6"),
    Item("lab6.gan", "json", "results/lab6/ddpm_vs_gan.json", "Lab 6 DDPM vs GAN comparison",
         LAB6_GAN, "an evaluator and the DDPM's results", "lab6"),
    Item("lab6.gan_fig", "png", "results/lab6/ddpm_vs_gan.png", "Lab 6 DDPM and GAN grids",
         LAB6_GAN, "an evaluator and the DDPM's results", "lab6"),
) + tuple(
    Item(f"lab6.ablation.{name}", "json", f"results/lab6/{name}/accuracy.json",
         f"Lab 6 extra experiment: {what}", LAB6.format(name=name, extra=extra),
         "an evaluator (checkpoint.pth)", "lab6")
    for name, extra, what in LAB6_ABLATIONS
)
