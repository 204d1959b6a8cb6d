//! `deploy/kubernetes/`: the manifests parse, and agree with the config
//! they mount — the ports the config listens on are the container's, the
//! probes ask the admin listener for `/healthz` and `/readyz`, the plugins
//! directory is where the plugins ConfigMap is mounted, the kv URL names the
//! Redis Service, the grace period covers the drain — and that config is
//! one the gateway accepts, with the plugins `make plugins` built.

use crate::support::built_plugin;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmgate::config::{Config, KvBackend};

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Every document of every `*.yaml` under `deploy/kubernetes/`.
fn documents() -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value =
                Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if !value.is_null() {
                documents.push(value);
            }
        }
    }
    documents
}

fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} `{name}` in deploy/kubernetes"))
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

/// The container port named `name`.
fn container_port(container: &Value, name: &str) -> u16 {
    let ports = container["ports"].as_sequence().expect("container ports");
    let port = ports
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port named `{name}`"));
    port["containerPort"].as_u64().unwrap() as u16
}

/// Whether `selector` (`matchLabels` or a Service's map) selects `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().expect("a selector");
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| &labels[k.as_str().unwrap()] == v)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubernetes_manifests_agree_with_the_config_they_mount() {
    let documents = documents();
    for document in &documents {
        assert!(
            document["apiVersion"].is_string()
                && document["kind"].is_string()
                && document["metadata"]["name"].is_string(),
            "every manifest has apiVersion, kind and metadata.name: {document:?}"
        );
    }
    let deployment = find(&documents, "Deployment", "wasmgate");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert!(selects(
        &deployment["spec"]["selector"]["matchLabels"],
        labels
    ));
    let container = &pod["spec"]["containers"][0];

    // The config file the container runs, and the ConfigMap mounted there.
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| str_of(a, "an arg"))
        .collect();
    assert_eq!(args[..2], ["run", "--config"]);
    let config_path = Path::new(args[2]);
    let mounted = |dir: &Path| -> &str {
        let mounts = container["volumeMounts"].as_sequence().unwrap();
        let mount = mounts
            .iter()
            .find(|m| Path::new(str_of(&m["mountPath"], "mountPath")) == dir)
            .unwrap_or_else(|| panic!("nothing mounted at {}", dir.display()));
        assert!(
            mount["subPath"].is_null(),
            "a subPath mount is never updated: no hot reload"
        );
        let volume = pod["spec"]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mount's volume");
        str_of(&volume["configMap"]["name"], "a ConfigMap volume")
    };
    let config_dir = config_path.parent().unwrap();
    let config_map = find(&documents, "ConfigMap", mounted(config_dir));
    let file_name = config_path.file_name().unwrap().to_str().unwrap();
    let text = str_of(&config_map["data"][file_name], "the mounted config");
    let config = Config::parse(text, config_path, config_dir)
        .unwrap_or_else(|e| panic!("the mounted config is refused: {e}"));

    // Ports and probes.
    let http = container_port(container, "http");
    let admin = container_port(container, "admin");
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(config.listeners[0].address.port(), http);
    assert!(config.listeners[0].address.ip().is_unspecified());
    let admin_config = config.admin.as_ref().expect("an admin listener");
    assert_eq!(admin_config.address.port(), admin);
    assert!(
        admin_config.address.ip().is_unspecified(),
        "probes reach it"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "admin", "{probe} asks the admin listener");
    }

    // Draining: the grace period covers the preStop pause and the drain.
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert!(
        Duration::from_secs(grace) >= wasmgate::DRAIN_DEADLINE + Duration::from_secs(pre_stop),
        "terminationGracePeriodSeconds {grace} < preStop {pre_stop} s + drain {:?}",
        wasmgate::DRAIN_DEADLINE
    );

    // Plugins come from their own ConfigMap, where the config looks.
    let plugins_map = mounted(&config.plugin_dir());
    assert_eq!(plugins_map, "wasmgate-plugins", "README's kubectl command");

    // Shared state: the kv URL names the Redis Service and its port.
    assert_eq!(config.kv.backend, KvBackend::Redis);
    let url = &config.kv.redis.as_ref().unwrap().url;
    let redis_service = find(&documents, "Service", "wasmgate-redis");
    let redis_port = redis_service["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert_eq!(url, &format!("redis://wasmgate-redis:{redis_port}"));
    let redis = find(&documents, "Deployment", "wasmgate-redis");
    let redis_pod = &redis["spec"]["template"];
    assert!(selects(
        &redis_service["spec"]["selector"],
        &redis_pod["metadata"]["labels"]
    ));
    let target = str_of(
        &redis_service["spec"]["ports"][0]["targetPort"],
        "targetPort",
    );
    container_port(&redis_pod["spec"]["containers"][0], target);

    // The Service and the disruption budget select the gateway's pods.
    let service = find(&documents, "Service", "wasmgate");
    assert!(selects(&service["spec"]["selector"], labels));
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let budget = find(&documents, "PodDisruptionBudget", "wasmgate");
    assert!(selects(&budget["spec"]["selector"]["matchLabels"], labels));
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap();
    let available = budget["spec"]["minAvailable"]
        .as_u64()
        .unwrap_or_else(|| replicas - budget["spec"]["maxUnavailable"].as_u64().unwrap());
    assert!((1..replicas).contains(&available), "a drain can proceed");

    // And the gateway accepts the config with the plugins built from this
    // tree: every plugin loads and takes its route config (Redis is
    // connected lazily, so none is needed here).
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for route in &config.routes {
        for plugin in &route.plugins {
            let file = format!("{}.wasm", plugin.name);
            std::fs::copy(built_plugin(&file), plugins.join(&file)).unwrap();
        }
    }
    let local = text.replace(
        &format!("dir: {}", config.plugin_dir().display()),
        "dir: plugins",
    );
    assert_ne!(local, text, "plugins.dir rewritten for the local check");
    std::fs::write(dir.path().join("wasmgate.yaml"), local).unwrap();
    wasmgate::validate(&dir.path().join("wasmgate.yaml"))
        .await
        .unwrap_or_else(|e| panic!("the mounted config does not validate: {e}"));
}
