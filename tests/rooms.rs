//! The rooms' module docs (actors/src/{edge,phones,store,ops}/mod.rs) promise that imports run
//! one way: edge -> phones -> store -> ops. This reads the sources and holds them to it: a
//! file that names a room above its own fails here, by name.

use std::path::{Path, PathBuf};

/// The rooms from the top down; each may name only the rooms after it.
const ROOMS: [&str; 4] = ["edge", "phones", "store", "ops"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read room").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_run_one_way_from_the_doors_to_the_ground_floor() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    let mut files_read = 0;
    for (level, room) in ROOMS.iter().enumerate() {
        let mut files = Vec::new();
        rust_files(&src.join(room), &mut files);
        assert!(!files.is_empty(), "room {room} has no files");
        for file in files {
            files_read += 1;
            let text = std::fs::read_to_string(&file).expect("read source");
            for above in &ROOMS[..level] {
                if text.contains(&format!("crate::{above}::")) {
                    wrong.push(format!("{} names crate::{above}", file.display()));
                }
            }
        }
    }
    assert!(files_read >= 20, "only {files_read} files read");
    assert!(wrong.is_empty(), "imports that run back up: {wrong:?}");
}
