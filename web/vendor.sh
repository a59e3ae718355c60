#!/usr/bin/env bash
# Refreshes the vendored charting library the dashboard uses (uPlot, MIT) from the npm registry.
#
#   bash web/vendor.sh            # the version pinned below
#   bash web/vendor.sh 1.6.33     # another version (then update UPLOT_VERSION here)
#
# The files are committed under web/public/static/vendor/ and embedded in the binary at compile
# time, so neither building nor running dualconn needs npm or a network. Only this script does.
set -euo pipefail
cd "$(dirname "$0")"

UPLOT_VERSION="${1:-1.6.32}"
dest=public/static/vendor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack "uplot@${UPLOT_VERSION}" --silent >/dev/null && tar xzf "uplot-${UPLOT_VERSION}.tgz")
mkdir -p "$dest"
cp "$tmp/package/dist/uPlot.esm.js" "$dest/uPlot.esm.js"
cp "$tmp/package/dist/uPlot.min.css" "$dest/uPlot.min.css"
cp "$tmp/package/LICENSE" "$dest/uPlot.LICENSE"
{
  echo "uplot ${UPLOT_VERSION} (MIT), from the npm registry by web/vendor.sh"
  echo "https://github.com/leeoniya/uPlot"
  (cd "$dest" && sha256sum uPlot.esm.js uPlot.min.css uPlot.LICENSE)
} > "$dest/VERSION"
cat "$dest/VERSION"
