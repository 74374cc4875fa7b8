//! Table-driven tests of the routing rules in DESIGN.md.

use std::path::Path;

use super::*;

fn route(file: &str) -> Route<()> {
    Route {
        pattern: RoutePattern::from_file_path(Path::new(file))
            .expect("valid pattern")
            .expect("a route file"),
        file: file.into(),
        value: (),
    }
}

fn table(files: &[&str]) -> RouteTable<()> {
    let (table, conflicts) = RouteTable::new(files.iter().map(|f| route(f)));
    assert_eq!(conflicts, [], "files {files:?}");
    table
}

/// `(file that serves, params as `name=value` joined by `&`)`, or `None`.
fn resolve(table: &RouteTable<()>, path: &str) -> Option<(String, String)> {
    table.lookup(path).map(|m| {
        let params: Vec<String> = m.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        (m.route.file.display().to_string(), params.join("&"))
    })
}

const FILES: &[&str] = &[
    "index.wasm",
    "hello.wasm",
    "about/index.wasm",
    "api/users/[id].wasm",
    "api/users/me.wasm",
    "api/users/[id]/posts.wasm",
    "blog/[...slug].wasm",
    "blog/featured.wasm",
    "docs/[[...path]].wasm",
    "shop/[cat]/[item].wasm",
    "shop/[cat]/index.wasm",
    "shop/sale/[...rest].wasm",
    "files/[name]/raw.wasm",
    "files/[...path].wasm",
];

#[test]
fn paths_resolve_to_the_most_specific_route() {
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        ("/", Some(("index.wasm", ""))),
        ("/hello", Some(("hello.wasm", ""))),
        ("/about", Some(("about/index.wasm", ""))),
        ("/index", None),
        ("/about/index", None),
        ("/Hello", None),
        ("/nope", None),
        ("/api/users/42", Some(("api/users/[id].wasm", "id=42"))),
        ("/api/users/me", Some(("api/users/me.wasm", ""))),
        (
            "/api/users/42/posts",
            Some(("api/users/[id]/posts.wasm", "id=42")),
        ),
        ("/api/users", None),
        ("/api/users/42/other", None),
        ("/blog/a", Some(("blog/[...slug].wasm", "slug=a"))),
        ("/blog/a/b/c", Some(("blog/[...slug].wasm", "slug=a/b/c"))),
        ("/blog/featured", Some(("blog/featured.wasm", ""))),
        (
            "/blog/featured/x",
            Some(("blog/[...slug].wasm", "slug=featured/x")),
        ),
        ("/blog", None),
        ("/docs", Some(("docs/[[...path]].wasm", ""))),
        ("/docs/a", Some(("docs/[[...path]].wasm", "path=a"))),
        ("/docs/a/b", Some(("docs/[[...path]].wasm", "path=a/b"))),
        ("/shop/toys", Some(("shop/[cat]/index.wasm", "cat=toys"))),
        (
            "/shop/toys/car",
            Some(("shop/[cat]/[item].wasm", "cat=toys&item=car")),
        ),
        (
            "/shop/sale/x/y",
            Some(("shop/sale/[...rest].wasm", "rest=x/y")),
        ),
        // `sale` has no index: the static branch fails, the param branch serves.
        ("/shop/sale", Some(("shop/[cat]/index.wasm", "cat=sale"))),
        (
            "/shop/sale/car",
            Some(("shop/sale/[...rest].wasm", "rest=car")),
        ),
        ("/files/a/raw", Some(("files/[name]/raw.wasm", "name=a"))),
        // The param branch fails deeper down: fall back to the catch-all.
        ("/files/a/b", Some(("files/[...path].wasm", "path=a/b"))),
        ("/api/users/a%20b", Some(("api/users/[id].wasm", "id=a b"))),
        ("/api/users/a%2Fb", Some(("api/users/[id].wasm", "id=a/b"))),
        ("/api/users/%C3%A9", Some(("api/users/[id].wasm", "id=é"))),
        ("/api/users/%FF", None),
        ("/api//users/42", None),
        ("/api/users/", None),
        ("", None),
        ("hello", None),
    ];
    let table = table(FILES);
    for (path, expected) in cases {
        let expected = expected.map(|(f, p)| (f.to_string(), p.to_string()));
        assert_eq!(resolve(&table, path), expected, "path {path:?}");
    }
}

#[test]
fn precedence_does_not_depend_on_file_order() {
    let mut files = FILES.to_vec();
    let forward = table(&files);
    files.reverse();
    let backward = table(&files);
    for path in [
        "/api/users/me",
        "/blog/featured",
        "/shop/sale/x",
        "/files/a/raw",
        "/docs",
        "/",
    ] {
        assert_eq!(
            resolve(&forward, path),
            resolve(&backward, path),
            "path {path}"
        );
    }
}

#[test]
fn static_segment_beats_param_beats_catch_all_beats_optional() {
    let table = table(&["x/[[...o]].wasm", "x/[...c].wasm", "x/[p].wasm", "x/s.wasm"]);
    assert_eq!(resolve(&table, "/x/s").unwrap().0, "x/s.wasm");
    assert_eq!(resolve(&table, "/x/t").unwrap().0, "x/[p].wasm");
    assert_eq!(resolve(&table, "/x/t/u").unwrap().0, "x/[...c].wasm");
    assert_eq!(resolve(&table, "/x").unwrap().0, "x/[[...o]].wasm");
}

#[test]
fn conflicts_name_both_files_and_earlier_file_keeps_serving() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["a.wasm", "a/index.wasm"], "a/index.wasm", "same route"),
        (
            &["[id].wasm", "[id]/index.wasm"],
            "[id]/index.wasm",
            "same route",
        ),
        (
            &["[id].wasm", "[slug]/edit.wasm"],
            "[slug]/edit.wasm",
            "different param names",
        ),
        (
            &["u/[id]/a.wasm", "u/[uid]/b.wasm"],
            "u/[uid]/b.wasm",
            "different param names",
        ),
        (
            &["b/[...a].wasm", "b/[...z].wasm"],
            "b/[...z].wasm",
            "different param names",
        ),
        (
            &["b/[...a].wasm", "b/[...a]/index.wasm"],
            "b/[...a]/index.wasm",
            "same route",
        ),
        (
            &["d/[[...a]].wasm", "d/[[...z]].wasm"],
            "d/[[...z]].wasm",
            "different param names",
        ),
        (
            &["d/index.wasm", "d/[[...x]].wasm"],
            "d/[[...x]].wasm",
            "index route and an optional",
        ),
        (
            &["d/[[...x]].wasm", "d.wasm"],
            "d.wasm",
            "index route and an optional",
        ),
        (
            &["[[...x]].wasm", "index.wasm"],
            "index.wasm",
            "index route and an optional",
        ),
    ];
    for (files, refused, reason) in cases {
        let (table, conflicts) = RouteTable::new(files.iter().map(|f| route(f)));
        assert_eq!(conflicts.len(), 1, "files {files:?}: {conflicts:?}");
        let conflict = &conflicts[0];
        assert_eq!(conflict.file, Path::new(refused), "files {files:?}");
        assert_eq!(conflict.existing, Path::new(files[0]), "files {files:?}");
        let message = conflict.to_string();
        assert!(message.contains(reason), "files {files:?}: {message}");
        assert!(
            message.contains(files[0]) && message.contains(refused),
            "{message}"
        );
        assert_eq!(table.routes().len(), files.len() - 1);
        assert_eq!(table.routes()[0].file, Path::new(files[0]));
    }
}

#[test]
fn same_param_name_at_one_level_is_not_a_conflict() {
    let table = table(&[
        "u/[id].wasm",
        "u/[id]/posts.wasm",
        "u/[...rest].wasm",
        "u/[[...opt]].wasm",
    ]);
    assert_eq!(resolve(&table, "/u/1/posts").unwrap().1, "id=1");
    assert_eq!(resolve(&table, "/u").unwrap().0, "u/[[...opt]].wasm");
}

#[test]
fn a_table_routes_a_path_to_its_file_with_its_params() {
    let route = |file: &str| Route {
        pattern: RoutePattern::from_file_path(Path::new(file))
            .unwrap()
            .unwrap(),
        file: file.into(),
        value: (),
    };
    let (table, conflicts) =
        RouteTable::new([route("api/users/[id].wasm"), route("api/users/me.wasm")]);
    assert!(conflicts.is_empty());
    let found = table.lookup("/api/users/42").unwrap();
    assert_eq!(found.route.pattern.to_string(), "/api/users/[id]");
    assert_eq!(found.params, [("id", "42".to_string())]);
    assert_eq!(table.lookup("/api/users/me").unwrap().params, []);
}
