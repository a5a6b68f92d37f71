//! Compiles the Kubernetes protobuf schemas under `proto/` (vendored by
//! `proto/vendor.py`) into one descriptor set, which `src/protobuf.rs` decodes request
//! bodies with.

use std::path::{Path, PathBuf};

fn protos(dir: &Path, root: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("proto/ is readable") {
        let path = entry.expect("a proto/ entry").path();
        if path.is_dir() {
            protos(&path, root, found);
        } else if path.extension().is_some_and(|e| e == "proto") {
            found.push(path.strip_prefix(root).expect("under proto/").to_path_buf());
        }
    }
}

fn main() {
    let root = Path::new("proto");
    println!("cargo::rerun-if-changed=proto");
    let mut files = Vec::new();
    protos(root, root, &mut files);
    files.sort();
    let mut compiler = protox::Compiler::new([root]).expect("the proto/ include path");
    compiler.include_imports(true);
    compiler.open_files(&files).unwrap_or_else(|e| panic!("the vendored protos compile: {e}"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("kubernetes.fds");
    std::fs::write(out, compiler.encode_file_descriptor_set()).expect("OUT_DIR is writable");
}
