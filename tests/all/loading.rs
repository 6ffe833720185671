//! Loading a tools directory: bad files are reported and skipped, never a
//! crash; compiled components are cached and a bad cache entry is not trusted.

use std::path::Path;

use toolhost::sandbox::{LoadSource, OpenError, Sandbox, SandboxOptions};

use crate::support::{examples_dir, hostile_dir};

fn copy_example(dir: &Path, name: &str) {
    std::fs::copy(examples_dir().join(name), dir.join(name)).unwrap();
}

fn reason_for<'a>(sandbox: &'a Sandbox, file: &str) -> &'a str {
    &sandbox
        .load_errors()
        .iter()
        .find(|e| e.path.ends_with(file))
        .unwrap_or_else(|| panic!("no load error for {file}: {:?}", sandbox.load_errors()))
        .reason
}

#[tokio::test]
async fn bad_files_are_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    copy_example(dir.path(), "echo.wasm");
    std::fs::write(dir.path().join("text.wasm"), "definitely not wasm").unwrap();
    std::fs::write(dir.path().join("empty.wasm"), "").unwrap();
    // The smallest valid core module: magic and version 1.
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let calc = std::fs::read(examples_dir().join("calc.wasm")).unwrap();
    std::fs::write(dir.path().join("truncated.wasm"), &calc[..calc.len() / 2]).unwrap();
    std::fs::copy(
        hostile_dir().join("otherworld.wasm"),
        dir.path().join("otherworld.wasm"),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a .wasm file, ignored").unwrap();

    let sandbox = Sandbox::open(SandboxOptions::for_dir(dir.path()))
        .await
        .unwrap();

    let names: Vec<_> = sandbox.tools().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["echo"]);
    assert_eq!(
        sandbox.load_errors().len(),
        5,
        "{:?}",
        sandbox.load_errors()
    );
    assert!(reason_for(&sandbox, "text.wasm").contains("not a WebAssembly file"));
    assert!(reason_for(&sandbox, "empty.wasm").contains("not a WebAssembly file"));
    assert!(reason_for(&sandbox, "core.wasm").contains("core wasm module, not a component"));
    assert!(reason_for(&sandbox, "truncated.wasm").contains("does not compile"));
    assert!(
        reason_for(&sandbox, "otherworld.wasm")
            .contains("is not a toolhost:tool/tool component (of 0.1.0 or 0.2.0)")
    );
    // And the good tool works.
    let out = crate::support::call(&sandbox, "echo", r#"{"message":"ok"}"#)
        .await
        .unwrap();
    assert_eq!(out.output["message"], "ok");
}

#[tokio::test]
async fn two_files_with_one_tool_name_keep_the_first() {
    let dir = tempfile::tempdir().unwrap();
    copy_example(dir.path(), "echo.wasm");
    std::fs::copy(
        examples_dir().join("echo.wasm"),
        dir.path().join("echo2.wasm"),
    )
    .unwrap();
    let sandbox = Sandbox::open(SandboxOptions::for_dir(dir.path()))
        .await
        .unwrap();
    assert!(sandbox.tool("echo").unwrap().path.ends_with("echo.wasm"));
    assert!(reason_for(&sandbox, "echo2.wasm").contains("is taken by"));
}

#[tokio::test]
async fn a_missing_tools_dir_is_an_open_error() {
    let err = Sandbox::open(SandboxOptions::for_dir("/no/such/tools/dir"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, OpenError::ToolsDir { .. }), "{err}");
    assert!(err.to_string().contains("/no/such/tools/dir"));
}

#[tokio::test]
async fn metadata_and_digests_are_loaded() {
    let sandbox = crate::support::examples();
    let calc = sandbox.tool("calc").unwrap();
    assert_eq!(calc.version, "0.1.0");
    assert_eq!(calc.effect, toolhost::config::EffectName::Pure);
    assert_eq!(calc.input_schema["properties"]["expr"]["type"], "string");
    let bytes = std::fs::read(&calc.path).unwrap();
    assert_eq!(calc.digest, blake3::hash(&bytes).to_hex().to_string());
}

async fn open_cached(tools: &Path, cache: &Path) -> Sandbox {
    // The key beside the cache (in its own 0700 directory), so every test
    // has its own and the user's real key is never touched.
    let key_dir = cache.with_extension("key");
    open_keyed(tools, cache, &key_dir).await
}

async fn open_keyed(tools: &Path, cache: &Path, key_dir: &Path) -> Sandbox {
    let mut options = SandboxOptions::for_dir(tools);
    options.cache_dir = Some(cache.to_path_buf());
    options.key_dir = Some(key_dir.to_path_buf());
    Sandbox::open(options).await.unwrap()
}

fn cached_artifacts(cache: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for engine_dir in std::fs::read_dir(cache).unwrap().flatten() {
        for f in std::fs::read_dir(engine_dir.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "cwasm") {
                found.push(f.path());
            }
        }
    }
    found
}

#[tokio::test]
async fn compiled_components_are_cached_and_bad_entries_recompiled() {
    let tools = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    copy_example(tools.path(), "calc.wasm");

    let first = open_cached(tools.path(), cache.path()).await;
    assert_eq!(first.load("calc").await.unwrap(), LoadSource::Compiled);
    let artifacts = cached_artifacts(cache.path());
    assert_eq!(artifacts.len(), 1);

    let second = open_cached(tools.path(), cache.path()).await;
    assert_eq!(second.load("calc").await.unwrap(), LoadSource::Cached);
    let out = crate::support::call(&second, "calc", r#"{"expr":"6*7"}"#)
        .await
        .unwrap();
    assert_eq!(out.output["value"], 42);

    // Flip one byte in the middle: the checksum no longer matches.
    let mut bytes = std::fs::read(&artifacts[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&artifacts[0], &bytes).unwrap();
    let third = open_cached(tools.path(), cache.path()).await;
    assert_eq!(third.load("calc").await.unwrap(), LoadSource::Compiled);
    let out = crate::support::call(&third, "calc", r#"{"expr":"6*7"}"#)
        .await
        .unwrap();
    assert_eq!(out.output["value"], 42);

    // Truncated, and garbage: recompiled as well; the rewrite is trusted again.
    std::fs::write(&artifacts[0], &bytes[..100]).unwrap();
    let fourth = open_cached(tools.path(), cache.path()).await;
    assert_eq!(fourth.load("calc").await.unwrap(), LoadSource::Compiled);
    let fifth = open_cached(tools.path(), cache.path()).await;
    assert_eq!(fifth.load("calc").await.unwrap(), LoadSource::Cached);
}

/// A header whose checksum is right but whose MAC is not: what anyone who can
/// write the cache (but not read the key) could make. Never deserialised.
#[tokio::test]
async fn a_forged_or_foreign_artifact_is_recompiled_never_deserialised() {
    let tools = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let key = root.path().join("key");
    copy_example(tools.path(), "calc.wasm");
    copy_example(tools.path(), "echo.wasm");

    let first = open_keyed(tools.path(), &cache, &key).await;
    assert_eq!(first.load("calc").await.unwrap(), LoadSource::Compiled);
    let artifacts = cached_artifacts(&cache);
    assert_eq!(artifacts.len(), 2);
    let calc_digest = &first.tool("calc").unwrap().digest;
    let calc_path = artifacts
        .iter()
        .find(|p| p.file_stem().unwrap().to_str() == Some(calc_digest))
        .unwrap()
        .clone();
    let echo_path = artifacts.iter().find(|p| **p != calc_path).unwrap().clone();
    let genuine = std::fs::read(&calc_path).unwrap();

    // 1. Forged: a payload change with a recomputed plain checksum (the old
    //    format's protection) in the MAC's place.
    let mut forged = genuine.clone();
    let payload_at = 16 + 32;
    forged[payload_at + 100] ^= 0x01;
    let sum = blake3::hash(&forged[payload_at..]);
    forged[16..payload_at].copy_from_slice(sum.as_bytes());
    std::fs::write(&calc_path, &forged).unwrap();
    let s = open_keyed(tools.path(), &cache, &key).await;
    assert_eq!(s.load("calc").await.unwrap(), LoadSource::Compiled);
    assert_eq!(
        std::fs::read(&calc_path).unwrap(),
        genuine,
        "rewritten, authentic"
    );

    // 2. Foreign: a genuine artifact made under another user's key.
    let other_key = root.path().join("other-key");
    let other_cache = root.path().join("other-cache");
    open_keyed(tools.path(), &other_cache, &other_key).await;
    let foreign = cached_artifacts(&other_cache)
        .into_iter()
        .find(|p| p.file_name() == calc_path.file_name())
        .unwrap();
    std::fs::copy(&foreign, &calc_path).unwrap();
    let s = open_keyed(tools.path(), &cache, &key).await;
    assert_eq!(s.load("calc").await.unwrap(), LoadSource::Compiled);

    // 3. Swapped: echo's genuine artifact under calc's name (the MAC binds
    //    the wasm digest, so it is not calc's).
    std::fs::copy(&echo_path, &calc_path).unwrap();
    let s = open_keyed(tools.path(), &cache, &key).await;
    assert_eq!(s.load("calc").await.unwrap(), LoadSource::Compiled);
    let out = crate::support::call(&s, "calc", r#"{"expr":"6*7"}"#)
        .await
        .unwrap();
    assert_eq!(out.output["value"], 42);

    // 4. Unreadable: a directory where the file should be (root reads any
    //    file, so permissions would prove nothing here).
    std::fs::remove_file(&calc_path).unwrap();
    std::fs::create_dir(&calc_path).unwrap();
    let s = open_keyed(tools.path(), &cache, &key).await;
    assert_eq!(s.load("calc").await.unwrap(), LoadSource::Compiled);
    assert_eq!(s.load("echo").await.unwrap(), LoadSource::Cached);
}

#[cfg(unix)]
#[tokio::test]
async fn the_key_is_private_and_an_open_key_dir_turns_the_cache_off() {
    use std::os::unix::fs::PermissionsExt;

    let tools = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (cache, key) = (root.path().join("cache"), root.path().join("key"));
    copy_example(tools.path(), "echo.wasm");
    open_keyed(tools.path(), &cache, &key).await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o700);
    assert_eq!(mode(&key.join("artifact.key")), 0o600);
    let s = open_keyed(tools.path(), &cache, &key).await;
    assert_eq!(s.load("echo").await.unwrap(), LoadSource::Cached);

    // Readable by others: no longer a secret, so nothing is trusted.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = open_keyed(tools.path(), &cache, &key).await;
    assert_eq!(s.load("echo").await.unwrap(), LoadSource::Compiled);
}

/// Compiling runs on a blocking thread: on a single-threaded runtime, a
/// heartbeat task keeps beating while `Sandbox::open` compiles examples
/// without a cache.
#[test]
fn compilation_runs_off_the_async_workers() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let beats = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let theirs = beats.clone();
        let heart = tokio::spawn(async move {
            loop {
                theirs.lock().unwrap().push(std::time::Instant::now());
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        });
        // Three mid-sized examples, uncached: enough compiling to see a
        // stall, little enough to keep the suite fast.
        let tools = tempfile::tempdir().unwrap();
        for name in ["calc.wasm", "markdown.wasm", "echo.wasm"] {
            copy_example(tools.path(), name);
        }
        let started = std::time::Instant::now();
        let sandbox = Sandbox::open(SandboxOptions::for_dir(tools.path()))
            .await
            .unwrap();
        let took = started.elapsed();
        heart.abort();
        assert_eq!(sandbox.tools().count(), 3);
        let beats = beats.lock().unwrap();
        // The share of the open during which the executor answered within
        // 100 ms. Compiling one example takes longer than that, so a
        // compiler on the executor would leave most of the open uncovered.
        let responsive: std::time::Duration = beats
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|gap| *gap < std::time::Duration::from_millis(100))
            .sum();
        assert!(
            responsive * 2 > took,
            "the executor answered for only {responsive:?} of the {took:?} open"
        );
        assert!(beats.len() > 5, "only {} beats in {took:?}", beats.len());
    });
}

/// Files of one kind (`meta`, `index`, `cwasm`) in a cache.
fn cache_files(cache: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for engine_dir in std::fs::read_dir(cache).unwrap().flatten() {
        for f in std::fs::read_dir(engine_dir.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == ext) {
                found.push(f.path());
            }
        }
    }
    found
}

/// A start reads what each tool said it is from a sealed record beside its
/// artifact, loading nothing; a record or index that fails its MAC (forged,
/// or another tool's genuine one) is ignored and rebuilt, never believed.
#[tokio::test]
async fn tool_metadata_is_cached_sealed_and_never_believed_forged() {
    let tools = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (cache, key) = (root.path().join("cache"), root.path().join("key"));
    copy_example(tools.path(), "calc.wasm");
    copy_example(tools.path(), "echo.wasm");

    let first = open_keyed(tools.path(), &cache, &key).await;
    let description = |s: &Sandbox, name: &str| s.tool(name).unwrap().description.clone();
    let echo_description = description(&first, "echo");
    assert_eq!(cache_files(&cache, "meta").len(), 2);
    assert_eq!(cache_files(&cache, "index").len(), 1);

    // Warm: every tool known, none loaded (no artifact read, no describe).
    let warm = open_keyed(tools.path(), &cache, &key).await;
    assert_eq!(warm.tools().count(), 2);
    assert!(warm.tools().all(|t| t.source().is_none()));
    assert_eq!(description(&warm, "echo"), echo_description);

    let echo_digest = first.tool("echo").unwrap().digest.clone();
    let calc_digest = first.tool("calc").unwrap().digest.clone();
    let meta = |digest: &str| {
        cache_files(&cache, "meta")
            .into_iter()
            .find(|p| p.file_stem().unwrap().to_str() == Some(digest))
            .unwrap()
    };
    let (echo_meta, calc_meta) = (meta(&echo_digest), meta(&calc_digest));
    let genuine = std::fs::read(&echo_meta).unwrap();

    // 1. Forged: the payload says something else; the MAC no longer fits.
    let forged = String::from_utf8_lossy(&genuine)
        .replace(
            "Returns its message unchanged.",
            "Returns its message, changed!!",
        )
        .into_bytes();
    assert_ne!(forged, genuine);
    std::fs::write(&echo_meta, &forged).unwrap();
    let s = open_keyed(tools.path(), &cache, &key).await;
    assert_eq!(description(&s, "echo"), echo_description);
    assert_eq!(
        std::fs::read(&echo_meta).unwrap(),
        genuine,
        "rebuilt, authentic"
    );

    // 2. Swapped: calc's genuine record under echo's digest (the MAC binds
    //    the digest), which would make echo's file answer to `calc`.
    std::fs::copy(&calc_meta, &echo_meta).unwrap();
    let s = open_keyed(tools.path(), &cache, &key).await;
    assert_eq!(description(&s, "echo"), echo_description);
    assert_eq!(s.tool("calc").unwrap().digest, calc_digest);
    assert!(s.load_errors().is_empty(), "{:?}", s.load_errors());

    // 3. A forged index naming calc's file with echo's digest: ignored,
    //    the file is hashed again.
    let index = cache_files(&cache, "index").remove(0);
    let mut bytes = b"toolhost-index1\n".to_vec();
    bytes.extend_from_slice(&[0u8; 32]);
    let calc_path = tools.path().join("calc.wasm");
    // calc's true facts: without the MAC, this entry would be believed.
    let facts = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&calc_path).unwrap();
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        serde_json::json!({"dev": m.dev(), "ino": m.ino(), "len": m.len(),
            "mtime_ns": ns(m.mtime(), m.mtime_nsec()), "ctime_ns": ns(m.ctime(), m.ctime_nsec())})
    };
    bytes.extend_from_slice(
        serde_json::json!({"files": {calc_path.to_str().unwrap(): {
            "facts": facts, "digest": echo_digest, "name": "calc", "racy": false}}})
        .to_string()
        .as_bytes(),
    );
    std::fs::write(&index, &bytes).unwrap();
    let s = open_keyed(tools.path(), &cache, &key).await;
    assert_eq!(s.tool("calc").unwrap().digest, calc_digest);
    let out = crate::support::call(&s, "calc", r#"{"expr":"6*7"}"#)
        .await
        .unwrap();
    assert_eq!(out.output["value"], 42);
}

/// Only what is new is compiled: a file added to a warm directory is
/// compiled and described; the others stay unloaded. A `only` open makes
/// only the named tool ready, but still knows every name.
#[tokio::test]
async fn only_new_files_are_compiled_and_only_wanted_tools_made_ready() {
    let tools = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (cache, key) = (root.path().join("cache"), root.path().join("key"));
    copy_example(tools.path(), "echo.wasm");
    open_keyed(tools.path(), &cache, &key).await;

    copy_example(tools.path(), "calc.wasm");
    let s = open_keyed(tools.path(), &cache, &key).await;
    assert_eq!(s.tool("echo").unwrap().source(), None, "known: not loaded");
    assert_eq!(
        s.tool("calc").unwrap().source(),
        Some(LoadSource::Compiled),
        "new: compiled and described"
    );

    let mut options = SandboxOptions::for_dir(tools.path());
    options.cache_dir = Some(cache.clone());
    options.key_dir = Some(key.clone());
    options.only = Some(["echo".to_string()].into_iter().collect());
    let s = Sandbox::open(options).await.unwrap();
    assert_eq!(
        s.tools().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["echo"]
    );
    let err = crate::support::call(&s, "nope", "{}").await.unwrap_err();
    assert!(err.to_string().contains("calc, echo"), "{err}");
    let out = crate::support::call(&s, "echo", r#"{"message":"hi"}"#)
        .await
        .unwrap();
    assert_eq!(out.output["message"], "hi");
    assert_eq!(s.tool("echo").unwrap().source(), Some(LoadSource::Cached));
}
