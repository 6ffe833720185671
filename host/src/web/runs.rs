//! The run API's handlers: submit, list, show, cancel.
//!
//! Why the body is read as text and parsed by the strict I-JSON parser, not
//! by serde: a duplicate `task` would otherwise silently keep the last one,
//! and an unknown field (a misspelt `max_step`) would be ignored; both are
//! refused, naming the field, as `tools/call` arguments are.

use std::time::Duration;

use axum::extract::{Path, RawQuery, Request, State};
use axum::response::Response;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::Api;
use super::error::{ApiError, json_answer};
use crate::agent::{Submission, Submitted};
use crate::json::parse_ijson;
use crate::store::{RunCursor, RunRecord, StepRecord, Store};

/// Runs a page holds when the client names no `limit`, and at most.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;
/// The longest run id a client may choose.
const MAX_RUN_ID: usize = 128;
/// The largest `max_steps` and `time_budget_s` a client may ask for.
const MAX_STEPS: u64 = 10_000;
const MAX_BUDGET_S: u64 = 7 * 24 * 3600;
/// The fields of a submission.
const FIELDS: &str = "task, run_id, max_steps, time_budget_s";

/// `POST /v1/runs`.
pub async fn submit(State(api): State<Api>, request: Request) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(request.into_body(), api.body_limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_input",
                format!(
                    "the body is larger than [serve] max_body_bytes ({} bytes)",
                    api.body_limit
                ),
            )
        })?;
    let submission = submission(&bytes)?;
    let hub = api.hub.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "config",
            "no models are configured, so this server cannot drive runs: add [[models]] entries to toolhost.toml",
        )
    })?;
    let (status, run) = match hub.submit(submission).await? {
        Submitted::Created(run) => (StatusCode::ACCEPTED, run),
        Submitted::Existing(run) => (StatusCode::OK, run),
    };
    let body = json!({"run_id": run.id, "status": run.status.as_str()});
    Ok(json_answer(status, &body))
}

/// Reads a submission from the body's text, refusing what it cannot keep
/// exactly as sent.
fn submission(bytes: &[u8]) -> Result<Submission, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::invalid("the body is not UTF-8: send a JSON object"))?;
    let value = parse_ijson(text).map_err(|e| {
        ApiError::invalid(format!(
            "the body is not I-JSON at {}: {}; send a JSON object with {FIELDS}",
            e.path, e.reason
        ))
    })?;
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid(format!(
            "the body must be a JSON object with {FIELDS}"
        )));
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.split(", ").any(|f| f == *k)) {
        return Err(ApiError::invalid(format!(
            "unknown field `{unknown}`; the fields are {FIELDS}"
        )));
    }
    let task = match fields.get("task") {
        Some(Value::String(t)) if !t.trim().is_empty() => t.clone(),
        Some(Value::String(_)) => {
            return Err(ApiError::invalid(
                "`task` is empty: say what the agent should do",
            ));
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "`task` must be a string: what the agent should do",
            ));
        }
        None => {
            return Err(ApiError::invalid(
                "`task` is missing: say what the agent should do",
            ));
        }
    };
    let run_id = match fields.get("run_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if valid_run_id(id) => Some(id.clone()),
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "`run_id` must be a string of 1 to {MAX_RUN_ID} letters, digits, `.`, `_`, `-` or `:`"
            )));
        }
    };
    let max_steps = count(&fields, "max_steps", MAX_STEPS)?.map(|n| n as u32);
    let time_budget = count(&fields, "time_budget_s", MAX_BUDGET_S)?.map(Duration::from_secs);
    Ok(Submission {
        run_id,
        task,
        max_steps,
        time_budget,
    })
}

/// An optional whole number from 1 to `max`.
fn count(fields: &Map<String, Value>, name: &str, max: u64) -> Result<Option<u64>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::invalid(format!(
                "`{name}` must be a whole number from 1 to {max}, got {v}"
            ))),
        },
    }
}

/// Ids a client may choose: short, and safe in a URL path unescaped.
fn valid_run_id(id: &str) -> bool {
    (1..=MAX_RUN_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
}

/// `GET /v1/runs?limit=N&after=CURSOR`: newest first; `next` is the cursor
/// of the following page, `null` on the last.
pub async fn list(State(api): State<Api>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let (limit, after) = page(query.as_deref().unwrap_or(""))?;
    // One more than asked says whether another page follows.
    let mut runs = api.store.list_runs(limit + 1, after.as_ref()).await?;
    let next = match runs.len() > limit {
        true => {
            runs.truncate(limit);
            runs.last().map(|r| RunCursor::after(r).encode())
        }
        false => None,
    };
    let runs: Vec<Value> = runs.iter().map(run_json).collect();
    Ok(json_answer(
        StatusCode::OK,
        &json!({"runs": runs, "next": next}),
    ))
}

/// The `limit` and `after` of a query string.
fn page(query: &str) -> Result<(usize, Option<RunCursor>), ApiError> {
    let (mut limit, mut after) = (DEFAULT_LIMIT, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
        match name {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "`limit` must be a whole number from 1 to {MAX_LIMIT}, got `{value}`"
                        ))
                    })?
            }
            "after" => {
                after = Some(RunCursor::decode(&value).ok_or_else(|| {
                    ApiError::invalid(
                        "`after` is not a cursor this server gave: pass the `next` of the previous page",
                    )
                })?)
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter `{other}`; the parameters are limit and after"
                )));
            }
        }
    }
    Ok((limit, after))
}

/// A run as `runs show --json` gives it.
pub fn run_json(run: &RunRecord) -> Value {
    json!(run)
}

/// A run and its steps, the body of `GET /v1/runs/{id}` and of the event
/// stream's `snapshot`.
pub async fn view(store: &Store, id: &str) -> Result<Value, ApiError> {
    let run = store
        .get_run(id)
        .await?
        .ok_or_else(|| ApiError::no_run(id))?;
    let steps = store.steps(id).await?;
    let steps: Vec<Value> = steps.iter().map(StepRecord::to_json).collect();
    Ok(json!({"run": run_json(&run), "steps": steps}))
}

/// `GET /v1/runs/{id}`.
pub async fn show(State(api): State<Api>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(json_answer(StatusCode::OK, &view(&api.store, &id).await?))
}

/// `POST /v1/runs/{id}/cancel`: `200` with the run once it stopped, `202`
/// when its session is still finishing a tool call.
pub async fn cancel(State(api): State<Api>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let Some(hub) = &api.hub else {
        // Without a hub this server drives nothing; it can still say why.
        return match api.store.get_run(&id).await? {
            None => Err(ApiError::no_run(&id)),
            Some(run) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "run_busy",
                format!(
                    "run `{}` is not driven by this server (it has no models configured)",
                    run.id
                ),
            )),
        };
    };
    let cancelled = hub.cancel_run(&id).await?;
    let status = match cancelled.run.status.is_unfinished() {
        true => StatusCode::ACCEPTED,
        false => StatusCode::OK,
    };
    Ok(json_answer(
        status,
        &json!({"run": run_json(&cancelled.run)}),
    ))
}
