//! Capabilities end to end: granted directories, environment variables and
//! allow-listed HTTP, against real components, real files and a real
//! server on 127.0.0.1. Nothing here connects anywhere but loopback: names
//! that "resolve" to the metadata service do so through an injected
//! resolver, and the check refuses them before any connect.

use std::net::IpAddr;

use serde_json::{Value, json};
use toolhost::config::{DirGrant, DirMode, ToolPolicy};
use toolhost::sandbox::egress::StaticResolver;
use toolhost::sandbox::{CallError, CallRequest, EgressOptions, ErrorKind, Sandbox};

use crate::support::call;
use crate::support_http::{Reply, TestCert, TestServer, allow, sandbox_with};

async fn fetch(sandbox: &Sandbox, url: &str) -> Result<Value, CallError> {
    let input = json!({ "url": url }).to_string();
    call(sandbox, "http_fetch", &input).await.map(|o| o.output)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn http_to_an_exactly_listed_host_port_works() {
    let server = TestServer::http(&[("/hello", Reply::Ok("hello from loopback".into()))]).await;
    let policy = allow(&[&server.host_port()]);
    let sandbox = sandbox_with(
        &["http_fetch"],
        &[("http_fetch", policy)],
        EgressOptions::default(),
    )
    .await;
    let out = fetch(&sandbox, &server.url("/hello")).await.unwrap();
    assert_eq!(out, json!({"status": 200, "body": "hello from loopback"}));
    let out = fetch(&sandbox, &server.url("/missing")).await.unwrap();
    assert_eq!(out["status"], 404);
}

#[tokio::test]
async fn unlisted_hosts_and_tools_without_policy_are_denied() {
    let listed = TestServer::http(&[("/", Reply::Ok("listed".into()))]).await;
    let other = TestServer::http(&[("/", Reply::Ok("secret".into()))]).await;
    let policy = allow(&[&listed.host_port()]);
    let sandbox = sandbox_with(
        &["http_fetch"],
        &[("http_fetch", policy)],
        EgressOptions::default(),
    )
    .await;
    let err = fetch(&sandbox, &other.url("/")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CapabilityDenied, "{err}");
    assert!(err.to_string().contains("allow_hosts"), "{err}");
    assert_eq!(other.hits(), 0, "the refused request reached the server");

    // No policy at all: nothing is listed, nothing gets out.
    let bare = sandbox_with(&["http_fetch"], &[], EgressOptions::default()).await;
    let err = fetch(&bare, &listed.url("/")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CapabilityDenied, "{err}");
    assert_eq!(listed.hits(), 0);
}

/// DNS tricks: a name the policy lists by wildcard that resolves to loopback
/// or to the cloud metadata address is refused (every resolved address is
/// checked, before any connect); the exact `host:port` grant opens it.
#[tokio::test]
async fn listed_names_resolving_to_internal_addresses_need_the_exact_grant() {
    let server = TestServer::http(&[("/", Reply::Ok("internal".into()))]).await;
    let port = server.addr.port();
    let resolver = StaticResolver::new()
        .with("loop.corp.test", &[ip("127.0.0.1")])
        .with("meta.corp.test", &[ip("169.254.169.254")])
        .with("mixed.corp.test", &[ip("127.0.0.1"), ip("::ffff:10.0.0.1")])
        .with("exact.corp.test", &[ip("127.0.0.1")]);
    let exact = format!("exact.corp.test:{port}");
    let policy = allow(&["*.corp.test", &exact]);
    let egress = EgressOptions::default().with_resolver(resolver);
    let sandbox = sandbox_with(&["http_fetch"], &[("http_fetch", policy)], egress).await;

    // The wildcard lists these names on port 80; they resolve internally.
    for name in ["loop.corp.test", "meta.corp.test", "mixed.corp.test"] {
        let err = fetch(&sandbox, &format!("http://{name}/latest/meta-data/"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CapabilityDenied, "{name}: {err}");
        assert!(
            err.to_string().contains("internal address"),
            "{name}: {err}"
        );
    }
    // Same check on the listed exact name but an unlisted port.
    let err = fetch(
        &sandbox,
        &format!("http://exact.corp.test:{}/", port.wrapping_add(1)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CapabilityDenied, "{err}");
    assert_eq!(server.hits(), 0);

    // The exact grant: resolved through the injected resolver, connected to
    // the checked address.
    let out = fetch(&sandbox, &format!("http://exact.corp.test:{port}/"))
        .await
        .unwrap();
    assert_eq!(out, json!({"status": 200, "body": "internal"}));
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn redirects_are_followed_and_each_hop_is_checked() {
    let outside = TestServer::http(&[("/secret", Reply::Ok("secret".into()))]).await;
    let server = TestServer::http(&[
        ("/hop", Reply::Redirect("/hello".into())),
        ("/hello", Reply::Ok("after a hop".into())),
        ("/away", Reply::Redirect(outside.url("/secret"))),
    ])
    .await;
    let policy = allow(&[&server.host_port()]);
    let sandbox = sandbox_with(
        &["http_fetch"],
        &[("http_fetch", policy)],
        EgressOptions::default(),
    )
    .await;

    let out = fetch(&sandbox, &server.url("/hop")).await.unwrap();
    assert_eq!(out, json!({"status": 200, "body": "after a hop"}));

    let err = fetch(&sandbox, &server.url("/away")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CapabilityDenied, "{err}");
    assert_eq!(outside.hits(), 0, "the redirect reached an unlisted host");
}

#[tokio::test]
async fn oversized_bodies_are_a_clear_error() {
    let server = TestServer::http(&[
        ("/sized", Reply::Sized(64 * 1024)),
        ("/chunked", Reply::Chunked(64 * 1024)),
        ("/small", Reply::Sized(1000)),
    ])
    .await;
    let policy = ToolPolicy {
        max_response_bytes: Some(4096),
        ..allow(&[&server.host_port()])
    };
    let sandbox = sandbox_with(
        &["http_fetch"],
        &[("http_fetch", policy)],
        EgressOptions::default(),
    )
    .await;
    // Declared too large (Content-Length), and found too large while streaming.
    for path in ["/sized", "/chunked"] {
        let err = fetch(&sandbox, &server.url(path)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutputTooLarge, "{path}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains("4096-byte cap (max_response_bytes)"),
            "{path}: {msg}"
        );
        assert!(msg.contains(path), "{path}: {msg}");
    }
    let out = fetch(&sandbox, &server.url("/small")).await.unwrap();
    assert_eq!(out["body"].as_str().unwrap().len(), 1000);
}

/// The host records the denial: a tool that swallows the refused request
/// and claims success still fails as `capability_denied`.
#[tokio::test]
async fn a_swallowed_denial_still_fails_the_call() {
    let sandbox = sandbox_with(
        &["sneak"],
        &[("sneak", allow(&["api.example.com"]))],
        EgressOptions::default(),
    )
    .await;
    for (scheme, authority) in [
        ("http", "169.254.169.254"),
        ("https", "10.0.0.1:443"),
        ("http", "api.example.com:8080"),
    ] {
        let input = json!({"scheme": scheme, "authority": authority, "path": "/"}).to_string();
        let err = call(&sandbox, "sneak", &input).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::CapabilityDenied,
            "{authority}: {err}"
        );
    }
}

#[tokio::test]
async fn https_works_with_a_trusted_certificate_only() {
    let cert = TestCert::new(&["tls.test"]);
    let server = TestServer::https(&[("/", Reply::Ok("over tls".into()))], &cert).await;
    let port = server.addr.port();
    let resolver = StaticResolver::new().with("tls.test", &[ip("127.0.0.1")]);
    let policy = allow(&[&format!("tls.test:{port}")]);
    let url = format!("https://tls.test:{port}/");

    let trusting = EgressOptions::default()
        .with_resolver(resolver.clone())
        .trust(std::slice::from_ref(&cert.cert))
        .unwrap();
    let sandbox = sandbox_with(&["http_fetch"], &[("http_fetch", policy.clone())], trusting).await;
    let out = fetch(&sandbox, &url).await.unwrap();
    assert_eq!(out, json!({"status": 200, "body": "over tls"}));

    // The same server without trusting its certificate: the handshake fails.
    let default = EgressOptions::default().with_resolver(resolver);
    let sandbox = sandbox_with(&["http_fetch"], &[("http_fetch", policy)], default).await;
    let err = fetch(&sandbox, &url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ToolFailed, "{err}");
    assert!(err.to_string().contains("TlsCertificateError"), "{err}");
}

fn dir_grant(host: &std::path::Path, mode: DirMode) -> ToolPolicy {
    ToolPolicy {
        dirs: vec![DirGrant {
            host: host.to_path_buf(),
            guest: "/data".into(),
            mode,
        }],
        ..ToolPolicy::default()
    }
}

#[tokio::test]
async fn notes_appends_with_the_key_only_where_granted_rw() {
    let data = tempfile::tempdir().unwrap();
    let rw = sandbox_with(
        &["notes"],
        &[("notes", dir_grant(data.path(), DirMode::Rw))],
        EgressOptions::default(),
    )
    .await;
    let request = |key: &str| CallRequest {
        idempotency_key: key.into(),
        ..CallRequest::default()
    };
    let input = r#"{"file": "log.txt", "text": "hello"}"#;
    let out = rw.call("notes", input, request("k1")).await.unwrap();
    assert_eq!(out.output, json!({"appended": true}));
    rw.call("notes", input, request("k2")).await.unwrap();
    let log = std::fs::read_to_string(data.path().join("log.txt")).unwrap();
    assert_eq!(log, "k1 hello\nk2 hello\n");

    for bad in ["../escape.txt", "a/b.txt", ".."] {
        let input = json!({"file": bad, "text": "x"}).to_string();
        let err = rw.call("notes", &input, request("k3")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}: {err}");
    }
    assert!(!data.path().parent().unwrap().join("escape.txt").exists());

    // Read-only grant: the write is refused, the file untouched.
    let ro = sandbox_with(
        &["notes"],
        &[("notes", dir_grant(data.path(), DirMode::Ro))],
        EgressOptions::default(),
    )
    .await;
    let err = ro.call("notes", input, request("k4")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CapabilityDenied, "{err}");
    assert_eq!(
        std::fs::read_to_string(data.path().join("log.txt")).unwrap(),
        log
    );

    // No policy: no /data at all, and a clean capability_denied, not a crash.
    let none = sandbox_with(&["notes"], &[], EgressOptions::default()).await;
    let err = none.call("notes", input, request("k5")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CapabilityDenied, "{err}");
}

/// Escapes from a granted directory: `..`, absolute paths, and symlinks
/// (to a file and to a directory) that point out of it.
#[tokio::test]
async fn no_path_escapes_a_grant() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOP SECRET").unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("ok.txt"), "granted").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        data.path().join("link.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), data.path().join("linkdir")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../../etc/passwd",
        data.path().join("rel"),
    )
    .unwrap();
    let policy = ToolPolicy {
        env: vec!["PATH".into(), "TOOLHOST_TEST_SURELY_UNSET".into()],
        ..dir_grant(data.path(), DirMode::Rw)
    };
    let sandbox = sandbox_with(&["snoop"], &[("snoop", policy)], EgressOptions::default()).await;

    let out = call(&sandbox, "snoop", r#"{"path": "/data/ok.txt"}"#)
        .await
        .unwrap();
    assert_eq!(out.output["contents"], "granted");
    // Only the granted variable that exists; nothing else of the host's.
    let env: Vec<String> = serde_json::from_value(out.output["env"].clone()).unwrap();
    assert_eq!(env.len(), 1, "{env:?}");
    assert!(env[0].starts_with("PATH="), "{env:?}");

    let secret_dir = outside.path().join("secret.txt");
    for escape in [
        "/data/link.txt".to_string(),
        "/data/linkdir/secret.txt".to_string(),
        "/data/rel".to_string(),
        "/data/../etc/passwd".to_string(),
        "/data/../../../../etc/passwd".to_string(),
        secret_dir.display().to_string(),
        "/etc/passwd".to_string(),
    ] {
        let input = json!({ "path": escape }).to_string();
        let err = call(&sandbox, "snoop", &input).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::CapabilityDenied | ErrorKind::ToolFailed
            ),
            "{escape}: {err}"
        );
        assert!(
            !msg.contains("TOP SECRET") && !msg.contains("root:"),
            "{escape} leaked: {msg}"
        );
    }
}
