//! Every component imports only what its world in `wit/orderly.wit` declares, and exports what
//! it declares: the worlds are the contract, checked against the built `.wasm` files.

use std::collections::BTreeSet;
use wasmtime::component::Component;
use wit_parser::{Resolve, WorldKey};

const COMPONENTS: [(&str, &str); 17] = [
    ("orders", "orders"),
    ("external_sim", "external-sim"),
    ("validator", "validator"),
    ("validation_sweeper", "validation-sweeper"),
    ("fulfilment_worker", "fulfilment"),
    ("fulfilment_sweeper", "fulfilment-sweeper"),
    ("notification", "notification"),
    ("notification_sweeper", "notification-sweeper"),
    ("notifications", "notifications"),
    ("monitor", "monitor"),
    ("monitor_refresh", "monitor-refresh"),
    ("admin", "admin"),
    ("medisupply", "medisupply"),
    ("inventory", "inventory"),
    ("payment", "payment"),
    ("shipping", "shipping"),
    ("gateway", "gateway"),
];

fn declared(resolve: &Resolve, world: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let package = resolve
        .packages
        .iter()
        .find(|(_, p)| p.name.namespace == "orderly" && p.name.name == "app")
        .map(|(id, _)| id)
        .expect("package orderly:app");
    let world = resolve
        .select_world(&[package], Some(world))
        .expect("world declared in wit/orderly.wit");
    let names = |items: &wit_parser::IndexMap<WorldKey, wit_parser::WorldItem>| {
        items
            .keys()
            .map(|key| match key {
                WorldKey::Name(name) => name.clone(),
                WorldKey::Interface(id) => resolve.id_of(*id).expect("named interface"),
            })
            .collect::<BTreeSet<_>>()
    };
    let world = &resolve.worlds[world];
    (names(&world.imports), names(&world.exports))
}

#[test]
fn components_match_their_declared_worlds() {
    let mut resolve = Resolve::default();
    resolve
        .push_dir(orderly_tests::repo_root().join("wit"))
        .expect("wit/ parses");
    let engine = wasmtime::Engine::default();
    for (file, world) in COMPONENTS {
        let path = orderly_tests::wasm_dir().join(format!("{file}.wasm"));
        let component = Component::from_file(&engine, &path).expect("a component");
        let kind = component.component_type();
        let imports: BTreeSet<String> = kind
            .imports(&engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let exports: BTreeSet<String> = kind
            .exports(&engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let (allowed_imports, declared_exports) = declared(&resolve, world);
        let undeclared: Vec<_> = imports.difference(&allowed_imports).collect();
        assert!(
            undeclared.is_empty(),
            "{world} imports {undeclared:?}, which world {world} does not declare; it imports {imports:#?}"
        );
        assert_eq!(exports, declared_exports, "{world} exports");
    }
}
