//! The files `toolhost tools new` writes, embedded in the binary: each
//! language's project template and a copy of its SDK and of the WIT
//! contract, so a new project builds without toolhost's sources and
//! without any package that is not on a public registry.
//!
//! `{{name}}` in a template is the tool's name; `{{componentize_py}}` the
//! pinned componentize-py version. (The JS SDK's own `{{ path }}`-style
//! examples never spell a placeholder exactly.)

/// One file of a project: where it goes, and its text (a template or a
/// verbatim copy).
#[derive(Debug, Clone, Copy)]
pub struct File {
    pub path: &'static str,
    pub text: &'static str,
}

/// componentize-py, pinned: the version the suite builds Python tools with.
pub const COMPONENTIZE_PY: &str = "0.25.1";

const fn file(path: &'static str, text: &'static str) -> File {
    File { path, text }
}

/// The WIT contract, at the path each language's build reads it from.
const WIT: &str = include_str!("../../../guest-sdk/wit/world.wit");

pub const RUST: &[File] = &[
    file(
        "Cargo.toml",
        include_str!("../../../guest-sdk/rust/template/Cargo.toml.tmpl"),
    ),
    file(
        "src/lib.rs",
        include_str!("../../../guest-sdk/rust/template/src/lib.rs.tmpl"),
    ),
    file(
        "README.md",
        include_str!("../../../guest-sdk/rust/template/README.md.tmpl"),
    ),
    file(
        ".gitignore",
        include_str!("../../../guest-sdk/rust/template/gitignore.tmpl"),
    ),
    file(
        "guest-sdk/rust/Cargo.toml",
        include_str!("../../../guest-sdk/rust/template/sdk-Cargo.toml.tmpl"),
    ),
    file(
        "guest-sdk/rust/src/lib.rs",
        include_str!("../../../guest-sdk/rust/src/lib.rs"),
    ),
    file(
        "guest-sdk/rust/src/forwarded.rs",
        include_str!("../../../guest-sdk/rust/src/forwarded.rs"),
    ),
    file(
        "guest-sdk/rust/src/http.rs",
        include_str!("../../../guest-sdk/rust/src/http.rs"),
    ),
    file(
        "guest-sdk/rust/src/schema.rs",
        include_str!("../../../guest-sdk/rust/src/schema.rs"),
    ),
    file("guest-sdk/wit/world.wit", WIT),
    // The workspace's lock: the new project starts from the versions this
    // toolhost was tested with (cargo drops the entries it does not need).
    file("Cargo.lock", include_str!("../../../Cargo.lock")),
];

pub const PYTHON: &[File] = &[
    file(
        "pyproject.toml",
        include_str!("../../../guest-sdk/python/template/pyproject.toml.tmpl"),
    ),
    file(
        "app.py",
        include_str!("../../../guest-sdk/python/template/app.py.tmpl"),
    ),
    file(
        "test_app.py",
        include_str!("../../../guest-sdk/python/template/test_app.py.tmpl"),
    ),
    file(
        "README.md",
        include_str!("../../../guest-sdk/python/template/README.md.tmpl"),
    ),
    file(
        ".gitignore",
        include_str!("../../../guest-sdk/python/template/gitignore.tmpl"),
    ),
    file(
        "toolhost_sdk/__init__.py",
        include_str!("../../../guest-sdk/python/toolhost_sdk/__init__.py"),
    ),
    file(
        "toolhost_sdk/_blake3.py",
        include_str!("../../../guest-sdk/python/toolhost_sdk/_blake3.py"),
    ),
    file(
        "toolhost_sdk/_world.py",
        include_str!("../../../guest-sdk/python/toolhost_sdk/_world.py"),
    ),
    file(
        "toolhost_sdk/forwarded.py",
        include_str!("../../../guest-sdk/python/toolhost_sdk/forwarded.py"),
    ),
    file(
        "toolhost_sdk/schema.py",
        include_str!("../../../guest-sdk/python/toolhost_sdk/schema.py"),
    ),
    file(
        "toolhost_sdk/http.py",
        include_str!("../../../guest-sdk/python/toolhost_sdk/http.py"),
    ),
    file("wit/world.wit", WIT),
    // The http-tool worlds, and the WASI packages they import (wasmtime's
    // wasi:http 0.2.12 WIT, what the host links).
    file(
        "wit/http.wit",
        include_str!("../../../guest-sdk/python/wit/http.wit"),
    ),
    file(
        "wit/deps/cli/cli.wit",
        include_str!("../../../guest-sdk/python/wit/deps/cli/cli.wit"),
    ),
    file(
        "wit/deps/clocks/clocks.wit",
        include_str!("../../../guest-sdk/python/wit/deps/clocks/clocks.wit"),
    ),
    file(
        "wit/deps/filesystem/filesystem.wit",
        include_str!("../../../guest-sdk/python/wit/deps/filesystem/filesystem.wit"),
    ),
    file(
        "wit/deps/http/http.wit",
        include_str!("../../../guest-sdk/python/wit/deps/http/http.wit"),
    ),
    file(
        "wit/deps/io/io.wit",
        include_str!("../../../guest-sdk/python/wit/deps/io/io.wit"),
    ),
    file(
        "wit/deps/random/random.wit",
        include_str!("../../../guest-sdk/python/wit/deps/random/random.wit"),
    ),
    file(
        "wit/deps/sockets/sockets.wit",
        include_str!("../../../guest-sdk/python/wit/deps/sockets/sockets.wit"),
    ),
];

pub const JS: &[File] = &[
    file(
        "package.json",
        include_str!("../../../guest-sdk/js/template/package.json"),
    ),
    file(
        "tool.js",
        include_str!("../../../guest-sdk/js/template/tool.js"),
    ),
    file(
        "tool.test.mjs",
        include_str!("../../../guest-sdk/js/template/tool.test.mjs"),
    ),
    file(
        "README.md",
        include_str!("../../../guest-sdk/js/template/README.md"),
    ),
    file(
        ".gitignore",
        include_str!("../../../guest-sdk/js/template/.gitignore"),
    ),
    JS_SDK,
    JS_BUILD,
    file("wit/world.wit", WIT),
];

const JS_SDK: File = file(
    "toolhost.js",
    include_str!("../../../guest-sdk/js/toolhost.js"),
);
const JS_BUILD: File = file("build.mjs", include_str!("../../../guest-sdk/js/build.mjs"));

/// TypeScript: the JS SDK, its declarations and the build's TypeScript
/// step (which a JavaScript project never loads, so it is not copied
/// there).
pub const TS: &[File] = &[
    file(
        "package.json",
        include_str!("../../../guest-sdk/js/template-ts/package.json"),
    ),
    file(
        "tsconfig.json",
        include_str!("../../../guest-sdk/js/template-ts/tsconfig.json"),
    ),
    file(
        "tool.ts",
        include_str!("../../../guest-sdk/js/template-ts/tool.ts"),
    ),
    file(
        "tool.test.ts",
        include_str!("../../../guest-sdk/js/template-ts/tool.test.ts"),
    ),
    file(
        "README.md",
        include_str!("../../../guest-sdk/js/template-ts/README.md"),
    ),
    file(
        ".gitignore",
        include_str!("../../../guest-sdk/js/template-ts/.gitignore"),
    ),
    JS_SDK,
    file(
        "toolhost.d.ts",
        include_str!("../../../guest-sdk/js/toolhost.d.ts"),
    ),
    JS_BUILD,
    file(
        "typescript.mjs",
        include_str!("../../../guest-sdk/js/typescript.mjs"),
    ),
    file("wit/world.wit", WIT),
];

/// `text` with the placeholders filled in.
pub fn render(text: &str, name: &str) -> String {
    text.replace("{{name}}", name)
        .replace("{{componentize_py}}", COMPONENTIZE_PY)
}
