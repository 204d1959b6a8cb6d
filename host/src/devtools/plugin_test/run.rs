//! Runs a cases file against a sandboxed plugin: per case a fresh instance,
//! kv store and fakes; per step the hooks the gateway would call, with the
//! bodies and context it would pass. A WIT component and a Proxy-Wasm
//! filter run alike, through the gateway's [`EntryPool`]: for a filter the
//! request hook is its request callbacks in a new HTTP context, the
//! response hook its response callbacks in the same context.

use super::cases::{Case, CasesFile, FakeResponse, Step};
use super::check::{Checker, Mismatch, Observed};
use super::report::CaseReport;
use super::sandbox::{FakeHandler, Sandbox, ROUTE};
use crate::plugin::component::bindings::{
    OutboundRequest, OutboundResponse, Request, RequestAction, Response,
};
use crate::plugin::entry::StepState;
use crate::plugin::{EntryPool, RequestContext};
use std::sync::Arc;

/// Runs every case of `file`, in order.
pub async fn run_cases(sandbox: &Sandbox, file: &CasesFile) -> Vec<CaseReport> {
    let mut reports = Vec::new();
    for case in &file.cases {
        let mismatches = run_case(sandbox, file, case).await;
        reports.push(CaseReport {
            name: case.name.clone(),
            line: case.line,
            mismatches,
        });
    }
    reports
}

async fn run_case(sandbox: &Sandbox, file: &CasesFile, case: &Case) -> Vec<Mismatch> {
    let fakes = sandbox.fakes();
    fakes.reset();
    for (upstream, responses) in &case.upstreams {
        fakes.fake_upstream(upstream, fake_handler(upstream, responses.0.clone()));
    }
    let mut checker = Checker::new(String::new());
    for (key, value) in &case.kv {
        if let Err(e) = sandbox.kv_seed(key, value.0.as_bytes()).await {
            checker.differ(&format!("kv.{key}"), "seeded", e);
            return checker.mismatches;
        }
    }
    let (config, config_text) = match (&case.config, &case.config_text) {
        (None, None) => (&file.config, &file.config_text),
        given => given,
    };
    let steps = case.steps();
    let pool = match sandbox.entry(config.as_ref(), config_text.as_deref()).await {
        Ok(pool) => pool,
        Err(error) => {
            let message = error.to_string();
            match &steps[0].expect.refused {
                Some(wanted) if message.contains(wanted.as_str()) => {}
                Some(wanted) => checker.differ(
                    "refused",
                    format!("a refusal containing {wanted:?}"),
                    message,
                ),
                None => checker.differ("init", "the config accepted", message),
            }
            return checker.mismatches;
        }
    };
    if let Some(wanted) = &steps[0].expect.refused {
        checker.differ(
            "refused",
            format!("a refusal containing {wanted:?}"),
            "the config was accepted",
        );
        return checker.mismatches;
    }
    let mut mismatches = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let prefix = if steps.len() > 1 {
            format!("step {}: ", i + 1)
        } else {
            String::new()
        };
        let context = case
            .context
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        let observed = run_step(sandbox, &pool, step, context).await;
        let mut checker = Checker::new(prefix);
        checker.check(&step.expect, &observed);
        mismatches.extend(checker.mismatches);
    }
    mismatches
}

/// Calls the hooks for one request as the gateway would, and records what
/// the plugin did.
async fn run_step(
    sandbox: &Sandbox,
    pool: &EntryPool,
    step: &Step,
    mut context: RequestContext,
) -> Observed {
    let mut state = StepState::default();
    let info = *pool.info();
    let spec = &step.request;
    let (path, query) = match spec.path.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (spec.path.clone(), None),
    };
    let mut request = Request {
        method: spec.method.clone(),
        path,
        query,
        headers: spec.headers.0.clone(),
        body: info
            .wants_request_body
            .then(|| spec.body().bytes().unwrap_or_default()),
        client_addr: spec.client_addr.clone(),
        route: ROUTE.into(),
    };
    let result = pool
        .on_request(&mut request, &mut None, &mut context, &mut state)
        .await;
    let (mut response, mut response_skipped) = (None, None);
    if let Some(spec) = &step.response {
        match &result {
            Ok(RequestAction::Continue(_)) if info.wants_response => {
                let mut upstream = Response {
                    status: spec.status,
                    headers: spec.headers.0.clone(),
                    body: info
                        .wants_response_body
                        .then(|| spec.body().bytes().unwrap_or_default()),
                };
                response = Some(
                    pool.on_response(&mut upstream, &mut None, &mut context, &mut state)
                        .await,
                );
            }
            Ok(RequestAction::Continue(_)) => {
                response_skipped = Some("the plugin's init says wants-response: false")
            }
            Ok(RequestAction::Respond(_)) => {
                response_skipped = Some("the request hook responded itself")
            }
            Err(_) => response_skipped = Some("the request hook faulted"),
        }
    }
    let (outbound, logs, metrics) = sandbox.fakes().take_records();
    Observed {
        request: result,
        response,
        response_skipped,
        context: context.into_iter().collect(),
        kv: sandbox.kv_entries(),
        logs,
        outbound,
        metrics,
    }
}

/// Answers calls to `upstream` with the first response whose `path` matches
/// the call's path-and-query (a `path` without `?` matches any query).
fn fake_handler(upstream: &str, responses: Vec<FakeResponse>) -> FakeHandler {
    let upstream = upstream.to_string();
    Arc::new(move |request: &OutboundRequest| {
        let target = &request.path_and_query;
        let path_only = target.split('?').next().unwrap_or(target);
        let found = responses.iter().find(|r| match &r.path {
            None => true,
            Some(p) if p.contains('?') => p == target,
            Some(p) => p == path_only,
        });
        let Some(fake) = found else {
            return Err(format!("no fake response for `{upstream}` {target}"));
        };
        if let Some(error) = &fake.error {
            return Err(error.clone());
        }
        Ok(OutboundResponse {
            status: fake.status,
            headers: fake.headers.0.clone(),
            body: fake.body().bytes().unwrap_or_default(),
        })
    })
}
