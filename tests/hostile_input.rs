//! Input nobody expected, end to end: arguments, payloads and sizes that must be refused with
//! one short `FATAL ERROR` and nothing stored, and limits a worker's own submits obey.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;

use rex_tests::Project;

/// `rex asynctask-submit foo -` fed `input`; returns (exit code, stderr).
fn submit_stdin(project: &Project, input: &[u8]) -> (i32, String) {
    let mut child = project
        .rex(&["asynctask-submit", "foo", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn submit");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // rex may stop reading at the first refused line: a broken pipe here is expected.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait submit");
    writer.join().expect("writer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An error must quote an excerpt of hostile input, never all of it.
fn assert_short(stderr: &str, limit: usize) {
    assert!(
        stderr.len() < limit,
        "the error echoes the input: {} bytes",
        stderr.len()
    );
}

#[test]
fn an_argument_that_is_not_utf8_is_refused_not_altered() {
    let project = Project::demo();
    let out = project
        .rex(&["asynctask-submit", "foo"])
        .arg(std::ffi::OsStr::from_bytes(b"{\"a\": \"\xff\"}"))
        .output()
        .expect("run rex");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("FATAL ERROR: Expected UTF-8 text\n"),
        "{stderr}"
    );
    assert_eq!(project.counts("foo"), (0, 0, 0));
}

#[test]
fn a_huge_payload_on_stdin_is_refused_with_a_short_error_and_nothing_submitted() {
    let project = Project::demo();
    // A valid first line, then 50 MB on one line: the whole input is refused.
    let mut input = b"{\"ok\": 1}\n{\"a\": \"".to_vec();
    input.extend(std::iter::repeat_n(b'x', 50 << 20));
    input.extend(b"\"}\n");
    let (code, stderr) = submit_stdin(&project, &input);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "FATAL ERROR: A payload of {} bytes exceeds the limit of 1048576 bytes",
            (50 << 20) + 9
        )),
        "{stderr}"
    );
    assert_short(&stderr, 300);
    assert_eq!(project.counts("foo"), (0, 0, 0));
}

#[test]
fn an_invalid_payload_is_quoted_as_an_excerpt() {
    let project = Project::demo();
    // 100 KB of nesting, one argument (below the kernel's 128 KB per argument).
    let deep = format!("{{\"a\": {}", "[".repeat(100_000));
    let (code, _, stderr) = project.run(&["asynctask-submit", "foo", &deep]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("FATAL ERROR: Expected a JSON object"),
        "{stderr}"
    );
    assert!(stderr.contains("(100006 bytes in all)"), "{stderr}");
    assert_short(&stderr, 600);
    let mut garbage = b"{\"a\": 1}\n".to_vec();
    garbage.extend(std::iter::repeat_n(b'{', 200_000));
    let (code, stderr) = submit_stdin(&project, &garbage);
    assert_eq!(code, 1, "{stderr}");
    assert_short(&stderr, 600);
    assert_eq!(project.counts("foo"), (0, 0, 0));
}

#[test]
fn a_worker_submitting_a_payload_over_the_limit_fails_its_task() {
    let project = Project::demo();
    project.submit("foo", &[r#"{"foo": 1}"#]);
    // The requeued {"foo": 2} takes 9 bytes.
    let (code, out, err) = project.run(&[
        "asynctask-workers",
        "--halt-when-empty",
        "--set=asynctask_workers={\"foo\": \"requeue_worker\"}",
        "--set=asynctask_max_payload_size=5",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let failed = project.failed("foo");
    assert_eq!(failed.len(), 1, "{out}\n{err}");
    assert_eq!(
        failed[0]["last_error"],
        "A payload of 9 bytes exceeds the limit of 5 bytes (asynctask_max_payload_size)"
    );
    assert_eq!(project.counts("foo"), (0, 0, 1));
}
