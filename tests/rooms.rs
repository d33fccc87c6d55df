//! The rooms' module docs (actors/src/{edge,phones,store,ops}/mod.rs) promise that imports run
//! one way: edge -> phones -> store -> ops. This reads the sources and holds them to it: a
//! file that names a room above its own fails here, by name. It holds two more promises of
//! the sources: phone records are written only in the store room (persistence.rs's module
//! doc), and no production function is longer than 80 lines (issue 20).

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

/// A source file without its unit tests (everything from the first `#[cfg(test)]` line on).
fn production_part(text: &str) -> &str {
    match text.find("\n#[cfg(test)]") {
        Some(end) => &text[..end],
        None => text,
    }
}

/// The production sources of both crates: the core's `src/` and `actors/src/` without the
/// simulators (test doubles, `simulators` feature).
fn production_files() -> Vec<PathBuf> {
    let actors = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&actors.join("src"), &mut files);
    rust_files(
        &actors.join("../src").canonicalize().expect("the core's src"),
        &mut files,
    );
    files.retain(|f| {
        let text = f.to_string_lossy();
        !text.contains("/sim/") && !text.ends_with("/tests.rs") && !text.contains("/tests/")
    });
    files
}

#[test]
fn phone_records_are_written_only_through_the_store_room() {
    // actors/src/store/persistence.rs promises that every phone job writes its record through
    // it; the core's store module and its backends are the other side of that door.
    let mut wrong = Vec::new();
    for file in production_files() {
        let name = file.to_string_lossy().replace('\\', "/");
        let core_store = name.contains("/src/store/") && !name.contains("/actors/src/");
        if name.contains("/actors/src/store/") || core_store {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for call in [".put_phone(", ".put_phone_fenced(", ".delete_phone("] {
            if production_part(&text).contains(call) {
                wrong.push(format!("{name} calls {call}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "phone records written outside the store room: {wrong:?}"
    );
}

/// Every `fn` of `text` (production part) with its length in lines, by brace matching (string
/// and char literals with braces are rare enough in this code base to count them).
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = production_part(text).lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        let signature = ["pub(crate) ", "pub(super) ", "pub ", ""]
            .iter()
            .filter_map(|vis| line.strip_prefix(vis))
            .map(|rest| rest.trim_start_matches("async ").trim_start_matches("const "))
            .find_map(|rest| rest.strip_prefix("fn "));
        let Some(signature) = signature else {
            i += 1;
            continue;
        };
        let name: String = signature
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened, mut end) = (0i32, false, i);
        for (j, body) in lines.iter().enumerate().skip(i) {
            end = j;
            if !opened && body.trim_end().ends_with(';') {
                break;
            }
            for c in body.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if opened && depth == 0 {
                break;
            }
        }
        out.push((name, end - i + 1));
        i = if opened { end + 1 } else { i + 1 };
    }
    out
}

#[test]
fn no_production_function_is_longer_than_80_lines() {
    const LIMIT: usize = 80;
    let mut long = Vec::new();
    let mut functions = 0;
    for file in production_files() {
        let text = std::fs::read_to_string(&file).expect("read source");
        for (name, lines) in function_lengths(&text) {
            functions += 1;
            if lines > LIMIT {
                long.push(format!("{}: {name} has {lines} lines", file.display()));
            }
        }
    }
    assert!(functions > 500, "only {functions} functions read");
    assert!(long.is_empty(), "functions over {LIMIT} lines: {long:#?}");
}

#[test]
fn the_function_length_reader_counts_what_it_should() {
    let text = "fn a() {\n    if x {\n        y();\n    }\n}\npub async fn b(\n    z: u8,\n) -> u8 {\n    z\n}\nfn c();\n#[cfg(test)]\nmod tests {\n    fn long() {\n    }\n}\n";
    assert_eq!(
        function_lengths(text),
        vec![("a".to_string(), 5), ("b".to_string(), 5), ("c".to_string(), 1)]
    );
}
