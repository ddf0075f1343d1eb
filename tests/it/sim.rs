//! The simulator's HTTP surface itself: what it answers outside the happy path, and that every
//! request — routed or not — is in its log with the `request-id` it answered with.

use crate::common::sim;
use intune_reconcile::sim::SimConfig;

/// One raw HTTP/1.1 exchange: status, the `request-id` header, and the body.
fn call(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let answer = crate::common::http::call(addr, method, path, &headers, &[]);
    let rid = answer.header("request-id").expect("a request-id header").to_owned();
    (answer.status, rid, answer.body)
}

#[test]
fn the_simulator_answers_like_graph_outside_its_routes_and_logs_every_request() {
    let sim = sim(SimConfig::default());
    let addr = sim.url().trim_start_matches("http://").to_owned();
    let token = sim.mint_token(&["DeviceManagementManagedDevices.Read.All"]);
    let t = Some(token.as_str());
    let cases: [(&str, &str, Option<&str>, u16, &str); 9] = [
        ("GET", "/v1.0/deviceManagement/managedDevices", None, 401, "InvalidAuthenticationToken"),
        ("GET", "/v1.0/deviceManagement/managedDevices?$top=1", t, 200, "\"value\""),
        ("GET", "/v1.0/deviceManagement/comanagedDevices", t, 400, "segment 'comanagedDevices'"),
        ("GET", "/beta/deviceManagement/comanagedDevices?$top=1", t, 200, "\"value\""),
        ("GET", "/v1.0/deviceManagement/remoteActionAudits", t, 400, "segment 'remoteActionAudits'"),
        ("GET", "/beta/deviceManagement/remoteActionAudits", t, 200, "\"value\""),
        ("DELETE", "/v1.0/deviceManagement/managedDevices/x", t, 400, "No route matches."),
        ("GET", "/v1.0/deviceManagement/managedDevices/x/y/z", None, 401, "InvalidAuthenticationToken"),
        ("GET", "/nothing/here", None, 404, "no such route in the simulator"),
    ];
    let mut ids = Vec::new();
    for (method, path, token, status, says) in cases {
        let (got, rid, body) = call(&addr, method, path, token);
        assert_eq!(got, status, "{method} {path}: {body}");
        assert!(body.contains(says), "{method} {path}: {body}");
        if body.contains("innerError") {
            assert!(body.contains(&format!("\"request-id\":\"{rid}\"")), "the body names the header's id: {body}");
        }
        ids.push(rid);
    }
    let log = sim.requests();
    assert_eq!(log.len(), cases.len(), "every request is logged once, routed or not");
    let seen: Vec<(&str, &str, u16, bool)> =
        log.iter().map(|r| (r.method.as_str(), r.path.as_str(), r.status, r.authorized)).collect();
    let want: Vec<(&str, &str, u16, bool)> = cases
        .iter()
        .map(|(m, p, tok, st, _)| (*m, p.split('?').next().unwrap_or_default(), *st, tok.is_some()))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), ids.len(), "a new request-id each time");
}
