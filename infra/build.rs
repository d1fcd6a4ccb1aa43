//! Embeds every `services/*.toml` so the default spec needs no file system and adding a service
//! is adding a file, not editing Rust.
//!
//! The crate's folder is read from `CARGO_MANIFEST_DIR` at run time, as cargo's docs ask of build
//! scripts: `env!` would bake in the folder the script was compiled in, and a checkout sharing
//! the target directory (a global `CARGO_TARGET_DIR`, a CI cache) would then read another
//! checkout's files, or fail once that one is deleted.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = PathBuf::from(manifest_dir).join("services");
    // Absolute on purpose: cargo records the path, so when the checkout that last ran the script
    // is gone, another one sharing the target directory finds the path missing and runs the
    // script again, which rewrites the `include_str!` paths below for itself. (While both exist,
    // cargo's mtime fingerprints treat them as one crate: the usual caveat of a shared target.)
    // The folder covers added and removed files; each file is listed too, for edits in place.
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").file_name())
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    files.sort();
    let mut out = String::from("/// `(file name, contents)` of every embedded service spec.\n");
    out.push_str("const EMBEDDED_SERVICES: &[(&str, &str)] = &[\n");
    for file in &files {
        let path = dir.join(file);
        println!("cargo::rerun-if-changed={}", path.display());
        writeln!(
            out,
            "    ({file:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("writing to a String cannot fail");
    }
    out.push_str("];\n");
    let out_dir = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(PathBuf::from(out_dir).join("embedded_services.rs"), out)
        .expect("OUT_DIR is writable");
}
