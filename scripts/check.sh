#!/usr/bin/env bash
# Formatting and lints for both workspaces: the host one (shared-abi, vmm,
# tests) and the guest one (guest/ + images/*, built by vmm/build.rs with its
# own profile and code-generation flags). Exits non-zero on any failure.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
status=0

run() {
    echo "+ $*"
    if ! "$@"; then
        echo "FAILED: $*" >&2
        status=1
    fi
}

# Host workspace.
run cargo fmt --all --check
run cargo clippy --all-targets -- -D warnings

# Guest workspace, with the environment vmm/build.rs gives the nested build
# (keep GUEST_RUSTFLAGS there and here in sync). Its own target directory
# outside guest/ and images/ so it does not trigger vmm's rerun-if-changed.
guest_env=(
    env
    -u RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS -u RUSTC_WORKSPACE_WRAPPER
    -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET -u CARGO_MAKEFLAGS
    "CARGO_ENCODED_RUSTFLAGS=$(printf -- '-Crelocation-model=static\x1f-Cno-redzone=yes\x1f-Ctarget-cpu=x86-64')"
)
guest=(--manifest-path guest/Cargo.toml)
run "${guest_env[@]}" cargo fmt "${guest[@]}" --all --check
# --target keeps the guest flags off host proc-macros and build scripts (a
# proc-macro built with -Crelocation-model=static does not link; see
# GUEST_TARGET in vmm/engine/build.rs).
run "${guest_env[@]}" cargo clippy "${guest[@]}" --workspace --all-targets --release \
    --target x86_64-unknown-linux-gnu --target-dir "$repo/target/guest-check" -- -D warnings

if [ "$status" -ne 0 ]; then
    echo "check.sh: FAILED" >&2
else
    echo "check.sh: ok"
fi
exit "$status"
