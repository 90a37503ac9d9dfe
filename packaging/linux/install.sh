#!/bin/sh
# Installs Lantern for this user: the app in ~/.local/share/lantern/app, `lantern` in ~/.local/bin,
# the menu entry and the icons in the user's local application folders. Run it from the unpacked tarball.
# `install.sh --uninstall` removes all of it (chats, settings and models in the data folder stay).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
app="$data/lantern/app"
bin="$HOME/.local/bin"
if [ "${1:-}" = "--uninstall" ]; then
  rm -rf "$app" "$bin/lantern" "$data/applications/lantern.desktop" "$data/icons/hicolor/scalable/apps/lantern.svg"
  for s in 16 32 48 64 128 256 512; do rm -f "$data/icons/hicolor/${s}x${s}/apps/lantern.png"; done
  echo "Lantern removed (your chats, settings and models are still in $data/lantern)."
  exit 0
fi
[ -x "$here/Lantern/Lantern" ] || { echo "install.sh: run it from the unpacked Lantern tarball" >&2; exit 2; }
rm -rf "$app.new"
mkdir -p "$app.new" "$bin" "$data/applications" "$data/icons/hicolor/scalable/apps"
cp -a "$here/Lantern/." "$app.new/"
rm -rf "$app" && mv "$app.new" "$app"  # the old version or the new one, never half of each
ln -sf "$app/lantern" "$bin/lantern"
sed "s|@BIN@|$app|" "$here/share/lantern.desktop" > "$data/applications/lantern.desktop"
cp "$here/share/icons/lantern.svg" "$data/icons/hicolor/scalable/apps/lantern.svg"
for png in "$here"/share/icons/lantern-*.png; do
  size=$(basename "$png" .png | sed 's/lantern-//')
  mkdir -p "$data/icons/hicolor/${size}x${size}/apps"
  cp "$png" "$data/icons/hicolor/${size}x${size}/apps/lantern.png"
done
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$data/applications" || true
echo "Lantern is installed: open it from your applications menu, or run $bin/lantern"
