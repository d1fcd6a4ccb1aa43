//! Embeds every `services/*.toml` so the default spec needs no file system and adding a service
//! is adding a file, not editing Rust.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("services");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("infra/services exists")
        .map(|entry| entry.expect("readable directory entry").file_name())
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    files.sort();
    let mut out = String::from("/// `(file name, contents)` of every embedded service spec.\n");
    out.push_str("const EMBEDDED_SERVICES: &[(&str, &str)] = &[\n");
    for file in &files {
        let path = dir.join(file);
        writeln!(
            out,
            "    ({file:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("writing to a String cannot fail");
    }
    out.push_str("];\n");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(Path::new(&out_dir).join("embedded_services.rs"), out)
        .expect("OUT_DIR is writable");
}
