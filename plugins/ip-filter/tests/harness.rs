//! The ip-filter plugin, loaded from its built `.wasm` in the SDK harness.

use serde_json::json;
use wasmgate_plugin_sdk::harness::{
    artifact, header, request, Harness, MetricUpdate, Request, RequestAction, RequestContext,
    RequestExt,
};

fn load(config: serde_json::Value) -> Harness {
    Harness::load(artifact("ip-filter"), config).expect("config accepted")
}

fn from(addr: &str) -> Request {
    let mut req = request("GET", "/");
    req.client_addr = addr.into();
    req
}

/// The client address the plugin let through, or the refusal's message.
fn verdict(plugin: &Harness, req: Request) -> Result<String, String> {
    let mut ctx = RequestContext::new();
    match plugin.on_request_with(req, &mut ctx).unwrap() {
        RequestAction::Continue(_) => Ok(ctx["ip-filter.client_ip"].clone()),
        RequestAction::Respond(resp) => {
            assert_eq!(resp.status, 403);
            assert_eq!(
                header(&resp.headers, "content-type"),
                Some("application/json")
            );
            let body: serde_json::Value =
                serde_json::from_slice(resp.body.as_deref().unwrap()).unwrap();
            assert_eq!(body["code"], "ip_forbidden");
            Err(body["error"].as_str().unwrap().to_string())
        }
    }
}

#[test]
fn only_allowed_networks_pass_and_refusals_are_403_json() {
    let plugin = load(json!({"allow": ["10.0.0.0/8", "192.0.2.7"]}));
    assert_eq!(
        verdict(&plugin, from("10.1.2.3:5000")),
        Ok("10.1.2.3".into())
    );
    assert_eq!(
        verdict(&plugin, from("192.0.2.7:1")),
        Ok("192.0.2.7".into())
    );
    assert_eq!(
        verdict(&plugin, from("192.0.2.8:1")),
        Err("client address not allowed".into())
    );
    assert_eq!(
        verdict(&plugin, from("11.0.0.1:1")),
        Err("client address not allowed".into())
    );
    assert_eq!(
        plugin.metrics().last(),
        Some(&MetricUpdate::Counter {
            name: "ip_forbidden".into(),
            value: 1,
            labels: vec![("route".into(), "test-route".into())]
        })
    );
}

#[test]
fn deny_wins_over_allow_and_works_alone() {
    let both = load(json!({"allow": ["10.0.0.0/8"], "deny": ["10.6.6.0/24"]}));
    assert!(verdict(&both, from("10.6.6.6:1")).is_err());
    assert!(verdict(&both, from("10.6.7.6:1")).is_ok());
    let deny_only = load(json!({"deny": ["198.51.100.0/24", "2001:db8::/32"]}));
    assert!(verdict(&deny_only, from("198.51.100.9:1")).is_err());
    assert!(verdict(&deny_only, from("[2001:db8::1]:1")).is_err());
    assert!(verdict(&deny_only, from("203.0.113.1:1")).is_ok());
    assert!(verdict(&deny_only, from("[2001:db9::1]:1")).is_ok());
}

#[test]
fn ipv6_networks_and_ipv4_mapped_clients() {
    let plugin = load(json!({"allow": ["2001:db8:aa::/48", "10.0.0.0/8"]}));
    assert_eq!(
        verdict(&plugin, from("[2001:db8:aa::5]:443")),
        Ok("2001:db8:aa::5".into())
    );
    assert!(verdict(&plugin, from("[2001:db8:ab::5]:443")).is_err());
    assert_eq!(
        verdict(&plugin, from("[::ffff:10.1.2.3]:443")),
        Ok("10.1.2.3".into()),
        "a dual-stack socket's mapped address is its IPv4 address"
    );
}

#[test]
fn forwarded_for_counts_only_trusted_hops() {
    // As the gateway passes it: the socket peer (10.0.0.5) appended last.
    let via = |xff: &str| from("10.0.0.5:1").with_header("x-forwarded-for", xff);
    let config = |hops: usize| json!({"allow": ["203.0.113.0/24"], "trusted_hops": hops});
    let (none, one, two) = (load(config(0)), load(config(1)), load(config(2)));

    let honest = "203.0.113.9, 10.0.0.5";
    assert!(
        verdict(&none, via(honest)).is_err(),
        "the header is ignored"
    );
    assert_eq!(verdict(&one, via(honest)), Ok("203.0.113.9".into()));

    let forged = "203.0.113.9, 198.51.100.1, 10.0.0.5";
    assert_eq!(
        verdict(&one, via(forged)),
        Err("client address not allowed".into()),
        "what the client wrote before the trusted proxy does not count"
    );
    assert_eq!(verdict(&two, via(forged)), Ok("203.0.113.9".into()));
    assert_eq!(
        verdict(&one, via("203.0.113.9:4711 , [::ffff:10.0.0.5]:1")),
        Ok("203.0.113.9".into()),
        "ports and mapped forms are read"
    );
    assert_eq!(
        verdict(
            &one,
            from("10.0.0.5:1").with_header("x-forwarded-for", "203.0.113.9")
        ),
        Ok("203.0.113.9".into()),
        "without the gateway's own entry"
    );

    let unknown = Err("client address cannot be determined".to_string());
    assert_eq!(
        verdict(&two, via("203.0.113.9, 10.0.0.5")),
        unknown,
        "too few hops"
    );
    assert_eq!(verdict(&one, via("unknown, 10.0.0.5")), unknown);
    assert_eq!(verdict(&one, from("10.0.0.5:1")), unknown, "no header");
}

#[test]
fn reads_forwarded_for_only_when_it_trusts_proxies() {
    let direct = load(json!({"deny": ["10.0.0.0/8"]}));
    assert_eq!(direct.header_interest(), Some(&[][..]));
    let proxied = load(json!({"deny": ["10.0.0.0/8"], "trusted_hops": 1}));
    assert_eq!(
        proxied.header_interest(),
        Some(&["x-forwarded-for".to_string()][..])
    );
}

#[test]
fn bad_configs_are_refused_with_the_field() {
    let cases = [
        (json!({}), "allow, deny: at least one must list a network"),
        (
            json!({"allow": ["10.0.0.0/8", "10.0.0.0/33"]}),
            "allow[1]: `10.0.0.0/33` is not an IP address or CIDR network",
        ),
        (
            json!({"deny": ["example.com"]}),
            "deny[0]: `example.com` is not an IP address or CIDR network",
        ),
        (
            json!({"deny": ["::1"], "trusted_hops": 17}),
            "trusted_hops: must be at most 16",
        ),
        (
            json!({"deny": ["::1"], "trusted_hops": -1}),
            "invalid value",
        ),
        (
            json!({"deny": ["::1"], "allowed": []}),
            "unknown field `allowed`",
        ),
    ];
    for (config, expected) in cases {
        let err = Harness::load(artifact("ip-filter"), config.clone())
            .err()
            .expect("refused");
        assert!(err.to_string().contains(expected), "{config}: {err}");
    }
}
