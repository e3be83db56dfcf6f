#!/usr/bin/env bash
# Download every checkpoint listed in checkpoints.tsv (or the file named by $HW2_CKPT_MANIFEST):
# one line per file, `url<TAB>destination<TAB>sha256`, destinations relative to this folder.
# Files already present with the right sha256 are skipped; a download whose sha256 differs
# is deleted and the script fails. Google Drive links go through gdown, others through wget.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
manifest=${HW2_CKPT_MANIFEST:-$here/checkpoints.tsv}
fail() { echo "error: $*" >&2; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

[ -f "$manifest" ] || fail "checkpoint manifest not found: $manifest"
count=0
while IFS=$'\t' read -r url dest want extra || [ -n "$url" ]; do
  case "$url" in ''|'#'*) continue ;; esac
  [ -n "${dest:-}" ] && [[ "${want:-}" =~ ^[0-9a-f]{64}$ ]] && [ -z "${extra:-}" ] ||
    fail "$manifest: malformed line (want url<TAB>destination<TAB>sha256): $url"
  case "$dest" in /*) ;; *) dest="$here/$dest" ;; esac
  count=$((count + 1))
  if [ -f "$dest" ] && [ "$(sha "$dest")" = "$want" ]; then
    echo "present: $dest"
    continue
  fi
  mkdir -p "$(dirname "$dest")" || fail "cannot create the folder of $dest"
  part="$dest.part"
  case "$url" in
    *drive.google.com*) gdown --fuzzy -q "$url" -O "$part" ;;
    *) wget -q -O "$part" "$url" ;;
  esac || { rm -f "$part"; fail "download failed: $url"; }
  got=$(sha "$part")
  [ "$got" = "$want" ] || { rm -f "$part"; fail "sha256 mismatch for $dest: expected $want, got $got"; }
  mv -f "$part" "$dest" && echo "downloaded: $dest"
done < "$manifest"
echo "$count checkpoint(s) ready"
