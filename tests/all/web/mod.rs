//! The run API and the runs page of `toolhost serve --http`: a real server
//! process on loopback over a SQLite file, driving runs on the scripted
//! model; every JSON answer the tests get is checked against
//! `docs/openapi/runs.json`.

mod api;
mod page;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::agent::{Backend, World, call, scripted_entry};
use crate::support::serve::Serve;

/// How long a test waits for a run to reach a state.
pub const WAIT: Duration = Duration::from_secs(30);

/// The OpenAPI document, parsed.
pub fn openapi() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi/runs.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `reference` (`#/a/b`) in `doc`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    doc.pointer(reference.trim_start_matches('#'))
        .unwrap_or_else(|| panic!("{reference} is not in the OpenAPI file"))
}

/// Checks `body`, the answer `status` to `method path_template`, against
/// the OpenAPI file: the status must be documented, the body valid.
pub fn conforms(method: &str, template: &str, status: u16, body: &Value) {
    let doc = openapi();
    let op = &doc["paths"][template][method];
    assert!(
        op.is_object(),
        "{method} {template} is not in the OpenAPI file"
    );
    let mut response = &op["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {template} answered {status}, which the OpenAPI file does not list: {body}"
    );
    if let Some(r) = response["$ref"].as_str() {
        response = resolve(&doc, r);
    }
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {template} {status}: no JSON schema"
    );
    schema_holds(&doc, schema, body, &format!("{method} {template} {status}"));
}

/// Checks `value` against `schema` (which may name `#/components/...`).
pub fn schema_holds(doc: &Value, schema: &Value, value: &Value, what: &str) {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&root).expect("the OpenAPI schemas compile");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: the answer violates the OpenAPI file: {errors:#?}\n{value:#}"
    );
}

/// Checks `value` against the named component schema.
pub fn is_a(name: &str, value: &Value) {
    let doc = openapi();
    let schema = json!({"$ref": format!("#/components/schemas/{name}")});
    schema_holds(&doc, &schema, value, name);
}

/// A server over a world with the `notes` tool and one scripted model.
pub struct Site {
    pub world: World,
    pub server: Serve,
    pub client: reqwest::Client,
    pub token: Option<String>,
}

/// The script every API test uses: `steps` steps, each one `calc` call and
/// one `notes` call, then an answer, each turn taking `turn_ms`.
pub fn script(steps: usize, turn_ms: u64) -> Value {
    let mut turns: Vec<Value> = (1..=steps)
        .map(|s| {
            json!({"tool_calls": [
                call("calc", json!({"expr": format!("{s}*7")})),
                call("notes", json!({"file": "notes.txt", "text": format!("step {s}")})),
            ], "delay_ms": turn_ms})
        })
        .collect();
    turns.push(json!({"text": "all done", "delay_ms": turn_ms}));
    json!({"mode": "conversation", "turns": turns})
}

impl Site {
    /// A server on a fresh SQLite world running `script`, with `extra`
    /// config and the bearer token `token` (which makes it need one).
    pub fn start(script: &Value, extra: &str, token: Option<&str>) -> Site {
        let mut world = World::on(Backend::Sqlite);
        world.own_tools(&["notes", "calc", "slow"]);
        world.extra = extra.to_string();
        let path = world.script("script.json", script);
        let config = world.write_config(&scripted_entry("m", &path));
        let config = config.to_str().unwrap().to_string();
        let vars: Vec<(&str, &str)> = token.map(|t| ("RUNS_TOKEN", t)).into_iter().collect();
        let server = match token {
            Some(_) => Serve::start_with(
                world.path(),
                &["--config", &config],
                &["--token-env", "RUNS_TOKEN"],
                &vars,
            ),
            None => Serve::start(world.path(), &["--config", &config], &[]),
        };
        Site {
            world,
            server,
            client: reqwest::Client::builder().timeout(WAIT).build().unwrap(),
            token: token.map(str::to_string),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.at(path)
    }

    fn authed(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// `method path` with `body` (raw text), checked against the OpenAPI
    /// file under `template`: the status and the JSON answer.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        template: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut r = self.authed(self.client.request(m, self.url(path)));
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let response = r.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("{method} {path} answered {status} with non-JSON {text:?}: {e}")
        });
        conforms(method, template, status, &v);
        (status, v)
    }

    pub async fn get(&self, path: &str, template: &str) -> (u16, Value) {
        self.send("get", path, template, None).await
    }

    /// Submits `body`; the answer's status and JSON.
    pub async fn submit(&self, body: Value) -> (u16, Value) {
        self.send("post", "/v1/runs", "/v1/runs", Some(&body.to_string()))
            .await
    }

    /// `GET /v1/runs/{id}`'s `run`.
    pub async fn run(&self, id: &str) -> Value {
        let (status, v) = self.get(&format!("/v1/runs/{id}"), "/v1/runs/{id}").await;
        assert_eq!(status, 200, "{v}");
        v["run"].clone()
    }

    /// Waits (bounded) until run `id`'s status satisfies `done`.
    pub async fn until(&self, id: &str, done: impl Fn(&str) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let run = self.run(id).await;
            if done(run["status"].as_str().unwrap_or("")) {
                return run;
            }
            assert!(start.elapsed() < WAIT, "run {id} never got there: {run}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One Server-Sent Event: its name and its data, parsed.
#[derive(Debug, Clone)]
pub struct Sse {
    pub name: String,
    pub data: Value,
}

/// A run's event stream as it arrives.
pub struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// Opens `GET /v1/runs/{id}/events` (200 and `text/event-stream`).
    pub async fn open(site: &Site, id: &str) -> Events {
        let response = site
            .authed(site.client.get(site.url(&format!("/v1/runs/{id}/events"))))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped), each checked against
    /// the OpenAPI file; `None` when the stream ends.
    pub async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if name.is_empty() && data.is_empty() {
                    continue;
                }
                let data: Value = serde_json::from_str(&data).unwrap();
                match name.as_str() {
                    "snapshot" => is_a("RunView", &data),
                    "end" => is_a("End", &data),
                    _ => {
                        is_a("Event", &data);
                        assert_eq!(data["event"], name.as_str(), "{data}");
                    }
                }
                return Some(Sse { name, data });
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("the event stream went quiet")
                .unwrap()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Every event up to and including `end`.
    pub async fn until_end(&mut self) -> Vec<Sse> {
        let mut seen = Vec::new();
        while let Some(e) = self.next().await {
            let end = e.name == "end";
            seen.push(e);
            if end {
                return seen;
            }
        }
        panic!("the stream ended without `end`: {seen:#?}");
    }
}
