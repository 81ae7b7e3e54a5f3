use super::*;

const GOOD: &str = r#"
spin_manifest_version = 2

[application]
name = "orderly"
version = "0.1.0"
description = "test"
authors = ["someone"]

[application.trigger.redis]
address = "{{ redis_url }}"

[variables]
redis_url = { default = "redis://127.0.0.1:6379" }
api_key = { required = true, secret = true }

[[trigger.http]]
route = "/orders/..."
component = "orders"

[[trigger.http]]
route = { private = true }
component = "validator"

[[trigger.redis]]
channel = "orders"
component = "validator"

[[trigger.cron]]
component = "validator"
cron_expression = "*/5 * * * * *"

[component.orders]
source = "target/orders.wasm"
allowed_outbound_hosts = ["http://validator.spin.internal", "{{ redis_url }}"]
key_value_stores = ["default"]
sqlite_databases = ["default"]
environment = { RUST_LOG = "info" }
files = [{ source = "static", destination = "/static" }]
[component.orders.variables]
key = "{{ api_key }}"
[component.orders.build]
command = "cargo build --target wasm32-wasip2 --release"
workdir = "components/orders"
watch = ["src/**/*.rs"]
[component.orders.tool.something]
anything = 1

[component.validator]
source = "target/validator.wasm"
"#;

fn parse(text: &str) -> Result<App, LoadError> {
    App::parse(text, Path::new("/app/spin.toml"))
}

fn problems(text: &str) -> Vec<ConfigProblem> {
    match parse(text) {
        Err(LoadError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

fn syntax_message(text: &str) -> String {
    match parse(text) {
        Err(LoadError::Syntax { message, .. }) => message,
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn loads_a_full_manifest() {
    let app = parse(GOOD).unwrap();
    assert_eq!(app.name, "orderly");
    assert_eq!(app.dir, Path::new("/app"));
    let orders = &app.components[&ComponentId::parse("orders").unwrap()];
    assert_eq!(orders.source, Path::new("/app/target/orders.wasm"));
    assert_eq!(orders.key_value_stores, ["default"]);
    assert_eq!(orders.allowed_outbound_hosts.len(), 2);
    assert_eq!(orders.files[0].source, Path::new("/app/static"));
    let build = orders.build.as_ref().unwrap();
    assert_eq!(build.workdir, Path::new("/app/components/orders"));
    assert_eq!(
        build.commands,
        ["cargo build --target wasm32-wasip2 --release"]
    );
    assert_eq!(app.http_triggers.len(), 2);
    assert_eq!(app.http_triggers[1].route, HttpRoute::Private);
    assert_eq!(app.redis_triggers[0].channel.to_string(), "orders");
    assert_eq!(app.cron_triggers[0].cron_expression, "*/5 * * * * *");
    assert!(app.redis_address.is_some());
}

#[test]
fn rejects_misspelt_keys_with_the_line() {
    let text = GOOD.replace("key_value_stores", "key_value_store");
    let message = syntax_message(&text);
    assert!(message.contains("key_value_store"), "{message}");
    assert!(message.contains("line"), "{message}");
}

#[test]
fn rejects_version_one_and_missing_version() {
    assert!(syntax_message("spin_manifest_version = \"1\"\nname = \"x\"").contains("spin doctor"));
    assert!(syntax_message("[application]\nname = \"x\"").contains("spin_manifest_version = 2"));
}

#[test]
fn reports_every_problem_at_once() {
    let text = r#"
spin_manifest_version = 2
[application]
name = "x"
[variables]
both = { default = "a", required = true }
[[trigger.http]]
route = "/a"
component = "missing"
[[trigger.http]]
route = "/b"
component = "Bad_Id"
[[trigger.mqtt]]
component = "a"
[component.a]
source = "a.wasm"
allowed_outbound_hosts = ["{{ nope }}"]
[component.a.variables]
x = "{{ unclosed"
"#;
    let found = problems(text);
    let joined: Vec<String> = found.iter().map(ToString::to_string).collect();
    let joined = joined.join("\n");
    assert_eq!(found.len(), 6, "{joined}");
    assert!(joined.contains("both `default` and `required"));
    assert!(joined.contains("no component `missing` is declared"));
    assert!(joined.contains("`Bad_Id` is not a valid component id"));
    assert!(joined.contains("trigger type `mqtt` is not supported"));
    assert!(joined.contains("undeclared application variable `nope`"));
    assert!(joined.contains("never closed"));
    assert!(found.iter().all(|problem| !problem.fix.is_empty()));
}

#[test]
fn remote_and_inline_components_are_explained() {
    let text = r#"
spin_manifest_version = 2
[application]
name = "x"
[[trigger.http]]
route = "/a"
component = { source = "a.wasm" }
[component.b]
source = { url = "https://example.com/b.wasm", digest = "sha256:00" }
"#;
    let found = problems(text);
    assert_eq!(found.len(), 2);
    assert!(found[0].message.contains("remote sources"));
    assert!(found[1].message.contains("inline component"));
}

#[test]
fn missing_wasm_files_are_listed() {
    let app = parse(GOOD).unwrap();
    match app.check_sources() {
        Err(LoadError::Invalid { problems, .. }) => {
            assert_eq!(problems.len(), 2);
            assert!(problems[0].fix.contains("orderly build"));
            assert!(problems[1].fix.contains("point `source`"));
        }
        other => panic!("expected missing sources, got {other:?}"),
    }
}

#[test]
fn variables_resolve_through_the_app() {
    let app = parse(GOOD).unwrap();
    let missing = app
        .resolve_variables(&VariableSources::default())
        .unwrap_err();
    assert!(
        missing.to_string().contains("SPIN_VARIABLE_API_KEY"),
        "{missing}"
    );
    let sources = VariableSources {
        overrides: [("api_key".to_string(), "secret".to_string())].into(),
        ..VariableSources::default()
    };
    let resolved = app.resolve_variables(&sources).unwrap();
    let orders = &app.components[&ComponentId::parse("orders").unwrap()];
    let key = &orders.variables[&VariableName::parse("key").unwrap()];
    assert_eq!(resolved.render(key), "secret");
}
