"""Stand-in iCLEVR: CLEVR-like scenes ray-cast with numpy, in the lab's layout.

    python3 -m p1.iclevr.render OUT_DIR [--scenes 6003] [--size 128 96] [--seed 0]

writes ``OUT_DIR/iclevr/CLEVR_train_{scene:06d}_{k}.png`` and ``OUT_DIR/train.json``
({file name: [object names]}), plus copies of objects.json, test.json and new_test.json: the
folder the lab's code reads. As in iCLEVR, each scene has three distinct objects and its image
k shows the first k + 1 of them (so 1, 2 and 3 objects), and 6003 scenes give 18,009 images.

A scene: a grey floor, 3 objects (cube, sphere or cylinder, in the 8 CLEVR colours, two sizes,
matte or shiny) resting on it without overlap, a directional light with hard shadows, a camera
looking down at about 30 degrees, both jittered per scene. Each pixel's ray is intersected
analytically with every object and the floor (rendered at 2x and box-filtered). A scene is
drawn again if an object would show fewer than 40 pixels (at 128x96; scaled with the area).
"""
import argparse
import json
import os
import shutil
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from p1.errors import UserError, run_cli
from p1.iclevr.labels import OBJECTS_JSON, TEST_JSONS, load_objects

COLOURS = {  # CLEVR's palette (Johnson et al. 2017), RGB 0..255
    "gray": (87, 87, 87), "red": (173, 35, 35), "blue": (42, 75, 215), "green": (29, 105, 20),
    "brown": (129, 74, 25), "purple": (129, 38, 192), "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
SHAPES = ("cube", "sphere", "cylinder")
SIZES = (0.45, 0.75)  # CLEVR's "small" and "large" half-extents
FLOOR_COLOUR = np.array([0.50, 0.50, 0.50])
SUPERSAMPLE = 2
MIN_VISIBLE_FRACTION = 40 / (128 * 96)  # of the image area, for every object
MAX_ATTEMPTS = 100
OBJECTS_PER_SCENE = 3
FAR = np.inf


@dataclass
class SceneObject:
    name: str          # "red sphere"
    x: float           # floor position
    z: float
    size: float        # radius (sphere, cylinder) or half side (cube)
    angle: float       # rotation about the vertical axis (cube)
    shiny: bool

    @property
    def shape(self) -> str:
        return self.name.split()[1]

    @property
    def colour(self) -> np.ndarray:
        return np.array(COLOURS[self.name.split()[0]]) / 255.0


@dataclass
class Camera:
    """A pinhole camera in a right-handed world (y up): looking along +z, +x is on the left."""
    position: np.ndarray  # (3,)
    target: np.ndarray    # (3,)
    fov_degrees: float


def camera_rays(camera: Camera, width: int, height: int) -> Tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions of one ray per pixel centre: (H*W, 3) each, rows top first."""
    forward = camera.target - camera.position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    half = np.tan(np.radians(camera.fov_degrees) / 2)
    u = (np.arange(width) + 0.5) / width * 2 - 1
    v = 1 - (np.arange(height) + 0.5) / height * 2
    uu, vv = np.meshgrid(u * half * width / height, v * half)
    directions = forward + uu.reshape(-1, 1) * right + vv.reshape(-1, 1) * up
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return np.broadcast_to(camera.position, directions.shape), directions


def _nearest_root(a, b, c):
    """Smallest positive root of a t² + b t + c = 0 per ray (inf where none)."""
    disc = b * b - 4 * a * c
    sqrt_disc = np.sqrt(np.maximum(disc, 0))
    t1 = (-b - sqrt_disc) / (2 * a)
    t2 = (-b + sqrt_disc) / (2 * a)
    t = np.where(t1 > 1e-6, t1, np.where(t2 > 1e-6, t2, FAR))
    return np.where(disc >= 0, t, FAR)


def intersect(obj: SceneObject, origins: np.ndarray, directions: np.ndarray
              ) -> Tuple[np.ndarray, np.ndarray]:
    """Hit distance (N,) (inf on a miss) and surface normal (N, 3) of rays with one object."""
    centre = np.array([obj.x, obj.size, obj.z])
    o = origins - centre
    d = directions
    if obj.shape == "sphere":
        t = _nearest_root((d * d).sum(1), 2 * (o * d).sum(1), (o * o).sum(1) - obj.size ** 2)
        normal = o + t[:, None] * d
        return t, normal / obj.size
    if obj.shape == "cylinder":  # vertical axis, y from 0 to 2 * size
        t_side = _nearest_root(d[:, 0] ** 2 + d[:, 2] ** 2,
                               2 * (o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]),
                               o[:, 0] ** 2 + o[:, 2] ** 2 - obj.size ** 2)
        y_side = o[:, 1] + t_side * d[:, 1]
        t_side = np.where(np.abs(y_side) <= obj.size, t_side, FAR)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_top = (obj.size - o[:, 1]) / d[:, 1]
        top_point = o + t_top[:, None] * d
        on_top = ((t_top > 1e-6) & (top_point[:, 0] ** 2 + top_point[:, 2] ** 2
                                    <= obj.size ** 2))
        t_top = np.where(on_top, t_top, FAR)
        t = np.minimum(t_side, t_top)
        point = o + np.where(np.isfinite(t), t, 0)[:, None] * d
        side_normal = point * np.array([1.0, 0.0, 1.0]) / obj.size
        normal = np.where((t_top < t_side)[:, None], np.array([0.0, 1.0, 0.0]), side_normal)
        return t, normal
    cos_a, sin_a = np.cos(obj.angle), np.sin(obj.angle)
    rotation = np.array([[cos_a, 0, -sin_a], [0, 1, 0], [sin_a, 0, cos_a]])  # world -> cube
    o_local, d_local = o @ rotation.T, d @ rotation.T
    with np.errstate(divide="ignore", invalid="ignore"):
        t_low = (-obj.size - o_local) / d_local
        t_high = (obj.size - o_local) / d_local
    t_near = np.nanmax(np.minimum(t_low, t_high), axis=1)
    t_far = np.nanmin(np.maximum(t_low, t_high), axis=1)
    hit = (t_near <= t_far) & (t_far > 1e-6)
    t = np.where(hit, np.where(t_near > 1e-6, t_near, t_far), FAR)
    point = o_local + np.where(np.isfinite(t), t, 0)[:, None] * d_local
    axis = np.abs(point).argmax(1)
    normal_local = np.zeros_like(point)
    normal_local[np.arange(len(point)), axis] = np.sign(point[np.arange(len(point)), axis])
    return t, normal_local @ rotation


def render(objects: Sequence[SceneObject], camera: Camera, light: np.ndarray, width: int,
           height: int) -> Tuple[np.ndarray, np.ndarray]:
    """uint8 image (height, width, 3) and visible pixel count of each object (len(objects),)."""
    big_w, big_h = width * SUPERSAMPLE, height * SUPERSAMPLE
    origins, directions = camera_rays(camera, big_w, big_h)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(directions[:, 1] < 0, -origins[:, 1] / directions[:, 1], FAR)
    nearest, normal = t_floor, np.tile([0.0, 1.0, 0.0], (len(directions), 1))
    owner = np.full(len(directions), -1)
    for index, obj in enumerate(objects):
        t, n = intersect(obj, origins, directions)
        closer = t < nearest
        nearest = np.where(closer, t, nearest)
        normal = np.where(closer[:, None], n, normal)
        owner = np.where(closer, index, owner)

    points = origins + np.where(np.isfinite(nearest), nearest, 0)[:, None] * directions
    albedo = np.tile(FLOOR_COLOUR, (len(directions), 1))
    shininess = np.zeros(len(directions))
    for index, obj in enumerate(objects):
        albedo[owner == index] = obj.colour
        shininess[owner == index] = 1.0 if obj.shiny else 0.15

    shadow_origins = points + 1e-4 * normal
    in_shadow = np.zeros(len(directions), dtype=bool)
    light_rays = np.broadcast_to(light, points.shape)
    for obj in objects:
        t, _ = intersect(obj, shadow_origins, light_rays)
        in_shadow |= np.isfinite(t)
    diffuse = np.clip((normal * light).sum(1), 0, None) * np.where(in_shadow, 0.0, 1.0)
    reflected = light - 2 * (normal * light).sum(1, keepdims=True) * normal
    specular = np.clip(-(reflected * directions).sum(1), 0, None) ** 24 * shininess
    specular *= ~in_shadow
    colour = albedo * (0.38 + 0.72 * diffuse[:, None]) + 0.6 * specular[:, None]
    sky = ~np.isfinite(nearest)
    colour[sky] = FLOOR_COLOUR * 0.9
    image = colour.reshape(big_h, big_w, 3)
    image = image.reshape(height, SUPERSAMPLE, width, SUPERSAMPLE, 3).mean(axis=(1, 3))
    pixels = np.clip(image ** (1 / 1.1) * 255 + 0.5, 0, 255).astype(np.uint8)
    visible = np.array([(owner == i).sum() for i in range(len(objects))]) / SUPERSAMPLE ** 2
    return pixels, visible


def random_scene(names: Sequence[str], rng: np.random.Generator
                 ) -> Tuple[List[SceneObject], Camera, np.ndarray]:
    """Objects (in the given order, placed without overlap), a jittered camera and light."""
    placed: List[SceneObject] = []
    for name in names:
        for _ in range(200):
            size = float(rng.choice(SIZES)) * rng.uniform(0.9, 1.1)
            x, z = rng.uniform(-2.6, 2.6), rng.uniform(-1.8, 2.4)
            clear = all(np.hypot(x - o.x, z - o.z) > 1.5 * (size + o.size) + 0.2
                        for o in placed)
            if clear:
                placed.append(SceneObject(name, x, z, size, rng.uniform(0, np.pi / 2),
                                          bool(rng.random() < 0.5)))
                break
        else:
            raise RuntimeError("no room for another object")
    camera = Camera(np.array([rng.uniform(-0.5, 0.5), rng.uniform(4.6, 5.4), -6.5]),
                    np.array([0.0, 0.0, 0.5]), rng.uniform(44, 48))
    light = np.array([rng.uniform(-0.8, -0.3), 1.0, rng.uniform(-0.9, -0.4)])
    return placed, camera, light / np.linalg.norm(light)


def render_scene(names: Sequence[str], width: int, height: int, rng: np.random.Generator
                 ) -> List[np.ndarray]:
    """Images k = 0..len(names)-1 of one scene (image k shows the first k + 1 objects)."""
    for _ in range(MAX_ATTEMPTS):
        objects, camera, light = random_scene(names, rng)
        images, all_visible = [], True
        for k in range(len(names)):
            image, visible = render(objects[:k + 1], camera, light, width, height)
            all_visible &= bool((visible >= MIN_VISIBLE_FRACTION * width * height).all())
            images.append(image)
        if all_visible:
            return images
    raise UserError(f"no scene of {', '.join(names)} shows every object in {MAX_ATTEMPTS} "
                    "tries")


def scene_labels(objects: Dict[str, int], rng: np.random.Generator) -> List[str]:
    """OBJECTS_PER_SCENE distinct object names in random order."""
    names = sorted(objects, key=objects.get)
    return [names[i] for i in rng.choice(len(names), OBJECTS_PER_SCENE, replace=False)]


def build(out_dir: str, scenes: int, width: int, height: int, seed: int,
          objects_path: str = OBJECTS_JSON, progress: Optional[callable] = None) -> int:
    """Render the stand-in set into out_dir (staged, moved into place when complete).
    Returns the number of images."""
    targets = [os.path.join(out_dir, name) for name in ("iclevr", "train.json")]
    existing = [path for path in targets if os.path.exists(path)]
    if existing:
        raise UserError(f"{existing[0]} already exists; remove it or choose another folder")
    objects = load_objects(objects_path)
    rng = np.random.default_rng(seed)
    staging = os.path.join(out_dir, ".render-tmp")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(os.path.join(staging, "iclevr"))
    try:
        labels = {}
        for scene in range(scenes):
            names = scene_labels(objects, rng)
            for k, image in enumerate(render_scene(names, width, height, rng)):
                file_name = f"CLEVR_train_{scene:06d}_{k}.png"
                Image.fromarray(image).save(os.path.join(staging, "iclevr", file_name))
                labels[file_name] = names[:k + 1]
            if progress is not None:
                progress(scene + 1)
        with open(os.path.join(staging, "train.json"), "w") as handle:
            json.dump(labels, handle)
        shutil.copy(objects_path, os.path.join(out_dir, "objects.json"))
        for name, path in TEST_JSONS.items():
            shutil.copy(path, os.path.join(out_dir, f"{name}.json"))
        for name in ("iclevr", "train.json"):
            os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(labels)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to hold iclevr/ and train.json")
    parser.add_argument("--scenes", type=int, default=6003,
                        help="scenes of 3 images each (6003 = iCLEVR's 18,009 images)")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 96), metavar=("W", "H"),
                        help="image size on disk")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.scenes < 1:
        raise UserError("--scenes must be >= 1")
    if min(args.size) < 16:
        raise UserError("--size must be at least 16 16")
    os.makedirs(args.out_dir, exist_ok=True)
    from tqdm import tqdm
    with tqdm(total=args.scenes, unit="scene") as bar:
        count = build(args.out_dir, args.scenes, args.size[0], args.size[1], args.seed,
                      progress=lambda done: bar.update(done - bar.n))
    print(f"wrote {count} images and train.json to {args.out_dir}")


if __name__ == "__main__":
    run_cli(main)
