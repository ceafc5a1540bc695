//! `impairments:`, `events:` and `expect[].after`: every mistake reported
//! with its YAML path and line before anything is created, and the plan of
//! each event (what the kernel will be told to change).

use cnlab::check::input::load_planned_str;
use cnlab::plan::faults::EventStep;
use cnlab::plan::{self, Backends};
use cnlab::topology::{load_str, Report};

const FILE: &str = include_str!("../../topologies/faults/link-loss-down-up-route.yaml");
const TERMINATING: &str =
    include_str!("../../topologies/faults/endpoint-terminating-iptables.yaml");

fn with(base: &str, old: &str, new: &str) -> String {
    assert!(base.contains(old), "base lacks {old:?}");
    base.replacen(old, new, 1)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line contains {needle:?}"))
}

fn report(text: &str) -> Report {
    match load_planned_str(text, "t.yaml") {
        Ok(_) => panic!("expected problems, got none\n{text}"),
        Err(r) => r,
    }
}

/// Among the errors, one at `path` on the line holding `needle` saying `frag`.
fn has(text: &str, path: &str, needle: &str, frag: &str) {
    let r = report(text);
    let line = line_of(text, needle);
    assert!(
        r.errors
            .iter()
            .any(|p| p.path == path && p.line == Some(line) && p.message.contains(frag)),
        "wanted {path} (line {line}) ~ {frag:?}\n{r}"
    );
}

#[test]
fn shipped_fault_topologies_load() {
    for t in [FILE, TERMINATING] {
        if let Err(r) = load_planned_str(t, "t.yaml") {
            panic!("{r}");
        }
    }
}

#[test]
fn after_must_name_an_event() {
    let t = with(FILE, "after: cable-back", "after: cable-bak # here");
    has(
        &t,
        "expect[5].after",
        "# here",
        "no such event (events: cable-dead",
    );
}

#[test]
fn an_event_does_one_thing() {
    let t = with(
        FILE,
        "{name: cable-cut, link_down: eth0/n2}",
        "{name: cable-cut, link_down: eth0/n2, link_up: eth0/n2} # here",
    );
    has(&t, "events[2]", "# here", "link_down and link_up");
    let t = with(
        FILE,
        "{name: cable-cut, link_down: eth0/n2}",
        "{name: cable-cut} # here",
    );
    has(&t, "events[2]", "# here", "the event says nothing happens");
}

#[test]
fn event_names_are_unique() {
    let t = with(FILE, "{name: cable-back,", "{name: cable-cut, # here\n   ");
    has(&t, "events[3].name", "# here", "used twice");
}

#[test]
fn links_are_links_of_this_topology() {
    let t = with(
        FILE,
        "{name: cable-cut, link_down: eth0/n2}",
        "{name: cable-cut, link_down: vpc} # here",
    );
    has(&t, "events[2].link_down", "# here", "is not a link");
    let t = with(
        FILE,
        "{link: eth0/n2, loss: 10}",
        "{link: eth0/n9, loss: 10} # here",
    );
    has(&t, "impairments[0].link", "# here", "unknown node \"n9\"");
}

#[test]
fn netem_settings_are_checked() {
    let t = with(
        FILE,
        "{link: eth0/n2, loss: 10}",
        "{link: eth0/n2, loss: 101} # here",
    );
    has(&t, "impairments[0].loss", "# here", "not a percentage");
    let t = with(
        FILE,
        "{link: eth0/n2, loss: 10}",
        "{link: eth0/n2, reorder: 5} # here",
    );
    has(&t, "impairments[0].reorder", "# here", "needs delay_ms");
    let t = with(
        FILE,
        "{link: eth0/n2, loss: 10}",
        "{link: eth0/n2, rate: fast} # here",
    );
    has(&t, "impairments[0].rate", "# here", "is not a rate");
    let t = with(FILE, "{link: eth0/n2, loss: 10}", "{link: eth0/n2} # here");
    has(&t, "impairments[0]", "# here", "sets nothing");
    let t = with(
        FILE,
        "{link: eth0/n2, loss: 10}",
        "{link: eth0/n2, loss: 10, dealy_ms: 5} # here",
    );
    has(
        &t,
        "impairments[0].dealy_ms",
        "# here",
        "did you mean `delay_ms`",
    );
}

#[test]
fn a_route_entry_the_vpc_lacks_is_a_planning_error_with_its_line() {
    let t = with(
        FILE,
        "route_entry_removed: 172.16.1.0/24}",
        "route_entry_removed: 172.16.9.0/24} # here",
    );
    has(
        &t,
        "events[5].route_entry_removed",
        "# here",
        "no entry for 172.16.9.0/24 (it has: 172.16.0.0/24, 172.16.1.0/24)",
    );
}

#[test]
fn endpoint_terminating_names_a_pod() {
    let t = with(
        TERMINATING,
        "endpoint_terminating: pod/default/web-1}",
        "endpoint_terminating: pod/default/web-9} # here",
    );
    has(
        &t,
        "events[0].endpoint_terminating",
        "# here",
        "unknown pod \"default/web-9\"",
    );
}

#[test]
fn without_netem_delay_is_refused_naming_the_key() {
    let t = with(
        FILE,
        "{link: eth0/n2, loss: 10}",
        "{link: eth0/n2, delay_ms: 20}",
    );
    let l = load_str(&t, "t.yaml").unwrap_or_else(|r| panic!("{r}"));
    let e = plan::plan(&l.resolved, Backends::PORTABLE)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("impairments[0].delay_ms: needs the kernel's netem qdisc"),
        "{e}"
    );
    let p = plan::plan(
        &l.resolved,
        Backends {
            netem: true,
            ..Backends::PORTABLE
        },
    )
    .unwrap();
    assert!(p
        .impairments
        .iter()
        .all(|i| !i.stand_in && i.netem.delay_ms == Some(20)));
}

#[test]
fn events_plan_as_kernel_changes() {
    let l = load_str(FILE, "t.yaml").unwrap_or_else(|r| panic!("{r}"));
    let p = plan::plan(&l.resolved, Backends::PORTABLE).unwrap();
    // The impairment acts on both ends of n2's cable.
    assert_eq!(p.impairments.len(), 2, "{:?}", p.impairments);
    let names: Vec<&str> = p.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cable-dead",
            "cable-lossy-again",
            "cable-cut",
            "cable-back",
            "loss-lifted",
            "route-deleted"
        ]
    );
    let node = p.ns_index("node/n2").unwrap();
    assert_eq!(
        p.events[2].steps,
        vec![EventStep::LinkDown {
            ns: node,
            ifname: "eth0".into()
        }]
    );
    match &p.events[3].steps[..] {
        [EventStep::LinkUp { routes, .. }] => assert!(
            routes.iter().any(|r| r.dst.to_string() == "0.0.0.0/0"),
            "link up restores the default route: {routes:?}"
        ),
        other => panic!("{other:?}"),
    }
    // The route entry goes from the VPC router's table, nothing else from it.
    let vpc = p.ns_index("vpc").unwrap();
    let routes: Vec<_> = p.events[5]
        .steps
        .iter()
        .filter_map(|s| match s {
            EventStep::Routes { ns, del, add } => Some((*ns, del.clone(), add.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(routes.len(), 1, "{:?}", p.events[5].steps);
    assert_eq!(routes[0].0, vpc);
    assert_eq!(routes[0].1.len(), 1);
    assert_eq!(routes[0].1[0].dst.to_string(), "172.16.1.0/24");
    assert!(routes[0].2.is_empty());
}

#[test]
fn a_terminating_endpoint_changes_only_kube_proxy_rules() {
    let l = load_str(TERMINATING, "t.yaml").unwrap_or_else(|r| panic!("{r}"));
    let p = plan::plan(&l.resolved, Backends::PORTABLE).unwrap();
    let steps = &p.events[0].steps;
    assert!(!steps.is_empty());
    for s in steps {
        match s {
            EventStep::Iptables { ns, rules } => {
                assert!(p.namespaces[*ns].key.starts_with("node/"));
                let web1 = p.endpoint("pod/default/web-1").unwrap().ip.to_string();
                let web2 = p.endpoint("pod/default/web-2").unwrap().ip.to_string();
                assert!(
                    !rules.contains(&format!("--to-destination {web1}:80")),
                    "{rules}"
                );
                assert!(
                    rules.contains(&format!("--to-destination {web2}:80")),
                    "{rules}"
                );
            }
            other => panic!("only iptables rules change: {other:?}"),
        }
    }
    // n2 runs one pod with its own namespace: web-2.
    assert_eq!(
        p.events[1].steps,
        vec![EventStep::RestartPod {
            pod: "pod/default/web-2".into()
        }]
    );
}
