//! Categories and products.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::fixtures::{json_of, refused, refused_of, refused_to, send};
use crate::helpers::{TestApp, fields, new_id, problem, problem_of};
use emporium_testkit::both;

/// A root category `Food` with `food_attributes`, and its child `Tea`, whose
/// `origin` (china or india) is required. Returns (food, tea).
async fn food_and_tea(app: &TestApp, food_attributes: Value) -> (String, String) {
    let food = app.category("Food", None, food_attributes).await;
    let origin =
        json!([{"name": "origin", "type": "enum", "values": ["china", "india"], "required": true}]);
    let tea = app.category("Tea", Some(&food), origin).await;
    (food, tea)
}

/// The category tree, as anyone reads it.
async fn tree(app: &TestApp) -> Value {
    json_of(app.get("/api/v1/categories")).await
}

/// PATCHes category `id` as an admin, asserting a 200.
async fn patch_category(app: &TestApp, id: &str, body: Value) -> Value {
    let r = app
        .admin_json(Method::PATCH, &format!("/api/v1/categories/{id}"), body)
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// A root category `category` holding one product `sku`: (the category's
/// id, the product as created, the product's path).
async fn lone_product(app: &TestApp, category: &str, sku: &str) -> (String, Value, String) {
    let cat = app.category(category, None, json!([])).await;
    let p = app.product(sku, &cat, json!({})).await;
    let path = format!("/api/v1/products/{}", p["id"].as_str().unwrap());
    (cat, p, path)
}

/// A root category `name` with a filterable `colour` (green or black), then
/// the attributes `more`; its id.
async fn coloured(app: &TestApp, name: &str, more: &[Value]) -> String {
    let colour =
        json!({"name": "colour", "type": "enum", "values": ["green", "black"], "filterable": true});
    let mut attributes = vec![colour];
    attributes.extend_from_slice(more);
    app.category(name, None, Value::Array(attributes)).await
}

/// POSTs a product's `body` as an admin: the answer, whatever its status.
async fn post_product(app: &TestApp, body: Value) -> Response {
    app.admin_json(Method::POST, "/api/v1/products", body).await
}

/// DELETEs `path` as an admin: the answer, whatever its status.
async fn admin_delete(app: &TestApp, path: &str) -> Response {
    send(app.as_admin(Method::DELETE, path)).await
}

/// PATCHes `path` as an admin with `If-Match: tag`: the answer, whatever its status.
async fn patch_if(app: &TestApp, path: &str, tag: &str, body: Value) -> Response {
    send(
        app.as_admin(Method::PATCH, path)
            .header("if-match", tag)
            .json(&body),
    )
    .await
}

async fn categories_form_a_tree_and_only_admins_change_it(app: TestApp) {
    let organic = json!([{"name": "organic", "type": "boolean", "filterable": true}]);
    let (food, tea) = food_and_tea(&app, organic).await;
    let tree_now = tree(&app).await;
    assert_eq!(tree_now[0]["name"], "Food");
    assert_eq!(tree_now[0]["slug"], "food");
    assert_eq!(tree_now[0]["children"][0]["id"], tea.as_str());
    assert_eq!(
        tree_now[0]["children"][0]["attributes"][0]["name"],
        "origin"
    );

    let nope = app
        .post("/api/v1/categories")
        .json(&json!({"name": "Nope"}));
    let (customer, service) = (Some(app.customer.as_str()), Some(app.orders.as_str()));
    refused_to(nope, &[(None, 401), (customer, 403), (service, 401)]).await;
    let taken = app.as_admin(Method::POST, "/api/v1/categories");
    refused_of(taken.json(&json!({"name": "Food"})), 409, "slug-taken").await;
    let bad = json!({"name": "", "attributes": [{"name": "x", "type": "enum"}]});
    let bad = app
        .admin_json(Method::POST, "/api/v1/categories", bad)
        .await;
    assert_eq!(
        fields(&problem(bad, 422).await),
        ["name", "slug", "attributes"]
    );

    let patched = patch_category(&app, &tea, json!({"name": "Teas", "position": 3})).await;
    assert_eq!(
        (&patched["name"], &patched["position"], &patched["slug"]),
        (&json!("Teas"), &json!(3), &json!("tea")),
        "{patched}"
    );
    // Stored, not only echoed: the tree read afterwards shows the change, and
    // what the patch did not name (slug, attributes) is kept.
    let tree_now = tree(&app).await;
    let node = &tree_now[0]["children"][0];
    assert_eq!(node["id"], tea.as_str(), "{tree_now}");
    assert_eq!(node["name"], "Teas", "{tree_now}");
    assert_eq!(node["position"], 3, "{tree_now}");
    assert_eq!(node["slug"], "tea", "{tree_now}");
    assert_eq!(node["attributes"][0]["name"], "origin", "{tree_now}");
    patch_category(&app, &tea, json!({"slug": "loose-tea"})).await;
    let tree_now = tree(&app).await;
    let node = &tree_now[0]["children"][0];
    assert_eq!(node["slug"], "loose-tea", "{tree_now}");
    assert_eq!(node["name"], "Teas", "{tree_now}");
    let unknown = "/api/v1/categories/01900000-0000-7000-8000-000000000000";
    refused(app.as_admin(Method::PATCH, unknown).json(&json!({})), 404).await;

    // A category with products, or with children, stays.
    app.product("TEA-1", &tea, json!({"origin": "china"})).await;
    let delete = |id: &str| app.as_admin(Method::DELETE, &format!("/api/v1/categories/{id}"));
    refused_of(delete(&tea), 409, "category-has-products").await;
    refused_of(delete(&food), 409, "category-has-children").await;
    let empty = app.category("Empty", None, json!([])).await;
    assert_eq!(send(delete(&empty)).await.status(), 204);
    refused(delete(&empty), 404).await;
}
both!(categories_form_a_tree_and_only_admins_change_it);

async fn products_are_validated_against_their_category_and_its_ancestors(app: TestApp) {
    let organic = json!([{"name": "organic", "type": "boolean"}]);
    let (_, tea) = food_and_tea(&app, organic).await;
    let attributes = json!({"origin": "china", "organic": true});
    let created = app.product("TEA-GREEN", &tea, attributes).await;
    assert_eq!(created["version"], 1);
    assert_eq!(created["available"], 0);
    assert_eq!(created["price"], json!({"amount": 1999, "currency": "EUR"}));

    let bad = post_product(
        &app,
        json!({"sku": "bad sku!", "name": "", "price": {"amount": -5, "currency": "euro"}, "category_id": tea,
               "attributes": {"origin": "peru", "organic": "yes", "colour": "green"}, "images": ["http://x"]}),
    )
    .await;
    let named = fields(&problem(bad, 422).await);
    for f in [
        "sku",
        "name",
        "price",
        "images",
        "attributes.organic",
        "attributes.origin",
        "attributes.colour",
    ] {
        assert!(named.contains(&f.to_owned()), "{f} not in {named:?}");
    }
    let missing = post_product(&app, json!({"sku": "X"})).await;
    let errors = problem(missing, 422).await["errors"].clone();
    assert_eq!(errors.as_array().unwrap().len(), 2);
    let dup = post_product(
        &app,
        json!({"sku": "TEA-GREEN", "name": "Again", "price": {"amount": 1, "currency": "EUR"}, "category_id": tea,
               "attributes": {"origin": "india"}}),
    )
    .await;
    assert_eq!(problem(dup, 409).await["type"], "/problems/sku-taken");
    let by_customer = app.post("/api/v1/products").bearer_auth(&app.customer);
    refused(by_customer.json(&json!({})), 403).await;
}
both!(products_are_validated_against_their_category_and_its_ancestors);

async fn product_updates_use_optimistic_concurrency(app: TestApp) {
    let (_, _, path) = lone_product(&app, "Books", "BOOK-1").await;
    let r = send(app.get(&path)).await;
    assert_eq!(r.headers()["etag"], "\"1\"");

    let renamed = json!({"name": "Renamed", "price": {"amount": 2500, "currency": "EUR"}});
    let r = patch_if(&app, &path, "\"1\"", renamed).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"2\"");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["name"], "Renamed");
    assert_eq!(v["price"]["amount"], 2500);
    assert_eq!(v["sku"], "BOOK-1", "fields not sent are kept");

    // Someone who read version 1 is refused.
    let stale = patch_if(&app, &path, "\"1\"", json!({"name": "Lost update"})).await;
    let body = problem(stale, 412).await;
    assert!(body["detail"].as_str().unwrap().contains('2'));
    problem(patch_if(&app, &path, "soon", json!({})).await, 422).await;

    assert_eq!(admin_delete(&app, &path).await.status(), 204);
    refused(app.get(&path), 404).await;
    refused(app.as_admin(Method::DELETE, &path), 404).await;
    refused(app.get("/api/v1/products/not-an-id"), 400).await;
}
both!(product_updates_use_optimistic_concurrency);

async fn products_list_by_category_subtree_in_pages(app: TestApp) {
    let root = app.category("Home", None, json!([])).await;
    let kitchen = app.category("Kitchen", Some(&root), json!([])).await;
    let garden = app.category("Garden", None, json!([])).await;
    for i in 0..3 {
        app.product(&format!("K-{i}"), &kitchen, json!({})).await;
    }
    app.product("H-0", &root, json!({})).await;
    app.product("G-0", &garden, json!({})).await;

    let mut skus = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/products?category={root}&limit=2&cursor={c}"),
            None => format!("/api/v1/products?category={root}&limit=2"),
        };
        let page = json_of(app.get(&path)).await;
        for p in page["items"].as_array().unwrap() {
            skus.push(p["sku"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        skus,
        vec!["H-0", "K-2", "K-1", "K-0"],
        "the sub-category's products are included, newest first"
    );
    let all = json_of(app.get("/api/v1/products?limit=100")).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    refused(app.get("/api/v1/products?limit=0"), 422).await;
    refused(app.get("/api/v1/products?cursor=zzz"), 422).await;
    // A parameter given twice is refused, whichever copy is the bad one.
    for (query, field) in [
        ("limit=abc&limit=2", "limit"),
        ("limit=2&limit=2", "limit"),
        ("sort=bogus&sort=price", "sort"),
        ("cursor=bzo1&cursor=", "cursor"),
    ] {
        let body = refused(app.get(&format!("/api/v1/products?{query}")), 422).await;
        assert!(fields(&body).contains(&field.to_owned()), "{query}: {body}");
    }
    let unknown = "/api/v1/products?category=01900000-0000-7000-8000-000000000000";
    refused(app.get(unknown), 404).await;
}
both!(products_list_by_category_subtree_in_pages);

async fn skus(app: &TestApp, query: &str) -> Vec<String> {
    let r = send(app.get(&format!("/api/v1/products?{query}"))).await;
    assert_eq!(r.status(), 200, "{query}");
    let page: Value = r.json().await.unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sku"].as_str().unwrap().to_owned())
        .collect()
}

/// Creates one product in `category` per spec (`sku`, `name`, `description`,
/// `price` in euro cents, `attributes`), each answering 201; their ids.
async fn create(app: &TestApp, category: &str, specs: &[Value]) -> Vec<String> {
    let mut ids = Vec::new();
    for spec in specs {
        let body = json!({"sku": spec["sku"], "name": spec["name"], "description": spec["description"],
                          "price": {"amount": spec["price"], "currency": "EUR"}, "category_id": category,
                          "attributes": spec["attributes"]});
        let r = post_product(app, body).await;
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"].clone();
        ids.push(id.as_str().unwrap().to_owned());
    }
    ids
}

async fn search_ranks_filters_sorts_and_counts_facets(app: TestApp) {
    let organic = json!({"name": "organic", "type": "boolean", "filterable": true});
    let grams = json!({"name": "grams", "type": "number"});
    let tea = coloured(&app, "Tea", &[organic, grams]).await;
    let teas = [
        json!({"sku": "SENCHA", "name": "Sencha green tea", "description": "Steamed leaves from Shizuoka.",
               "price": 1200, "attributes": {"colour": "green", "organic": true, "grams": 100}}),
        json!({"sku": "ASSAM", "name": "Assam breakfast", "description": "A malty black tea; pairs with green apples.",
               "price": 800, "attributes": {"colour": "black", "organic": false, "grams": 250}}),
        json!({"sku": "MATCHA", "name": "Matcha green tea powder", "description": "Stone-ground.",
               "price": 2500, "attributes": {"colour": "green", "organic": false, "grams": 30}}),
    ];
    let ids = create(&app, &tea, &teas).await;
    let w = app.warehouse("TEA-W").await;
    assert_eq!(app.set_stock(&w, &ids[0], 3).await.status(), 200);

    // Relevance: the name outranks the description.
    let found = skus(&app, "q=green").await;
    assert_eq!(found.len(), 3);
    assert_eq!(
        found.last().unwrap(),
        "ASSAM",
        "a description-only match ranks last: {found:?}"
    );
    assert_eq!(skus(&app, "q=malty").await, vec!["ASSAM"]);
    assert!(skus(&app, "q=coffee").await.is_empty());
    // Hostile search text is searched for, not interpreted: no operator,
    // wildcard or SQL widens the match (no product holds these words), and
    // nothing is harmed.
    for q in [
        "%22",
        "OR",
        "*",
        "(",
        "NEAR(a%20b)",
        "%27%3B%20DROP%20TABLE%20products",
    ] {
        assert_eq!(
            skus(&app, &format!("q={q}")).await,
            Vec::<String>::new(),
            "q={q}"
        );
    }
    // `AND` and `NOT` are words, not operators. PostgreSQL drops them as
    // English stop words and finds `green`; SQLite's FTS5 has no stop words
    // and wants all three, which no product holds.
    let mut found = skus(&app, "q=green%20AND%20NOT").await;
    found.sort();
    if app.is_sqlite() {
        assert_eq!(found, Vec::<String>::new());
    } else {
        assert_eq!(found, ["ASSAM", "MATCHA", "SENCHA"]);
    }
    assert_eq!(
        skus(&app, "limit=100").await.len(),
        3,
        "the products are all still there"
    );

    let in_tea = format!("q=green&category={tea}&attr.organic=false");
    for (query, expected) in [
        ("sort=price", vec!["ASSAM", "SENCHA", "MATCHA"]),
        ("sort=-price", vec!["MATCHA", "SENCHA", "ASSAM"]),
        ("min_price=1000&max_price=2000", vec!["SENCHA"]),
        ("in_stock=true", vec!["SENCHA"]),
        ("attr.colour=green&sort=price", vec!["SENCHA", "MATCHA"]),
        ("attr.organic=true", vec!["SENCHA"]),
        (in_tea.as_str(), vec!["MATCHA", "ASSAM"]),
    ] {
        assert_eq!(skus(&app, query).await, expected, "{query}");
    }

    let page = json_of(app.get("/api/v1/products?q=green")).await;
    let unasked = "facets are counted only when asked for";
    assert_eq!(page["facets"], json!({}), "{unasked}");
    let page = json_of(app.get("/api/v1/products?q=green&facets=true")).await;
    assert_eq!(page["facets"]["colour"], json!({"green": 2, "black": 1}));
    assert_eq!(page["facets"]["organic"], json!({"true": 1, "false": 2}));
    let unfilterable = "only filterable attributes are counted";
    assert!(page["facets"].get("grams").is_none(), "{unfilterable}");
    let page = json_of(app.get("/api/v1/products?attr.colour=green&facets=true")).await;
    let matched = "facets count what matched";
    assert_eq!(page["facets"]["colour"], json!({"green": 2}), "{matched}");

    for bad in [
        "sort=cheapest",
        "min_price=-1",
        "max_price=abc",
        "in_stock=maybe",
        "attr.Bad-Name=1",
        "facets=maybe",
    ] {
        refused(app.get(&format!("/api/v1/products?{bad}")), 422).await;
    }
}
both!(search_ranks_filters_sorts_and_counts_facets);

async fn the_demo_catalog_is_browsable(app: TestApp) {
    let seeded = emporium_catalog::seed::seed(app.store.as_ref())
        .await
        .unwrap();
    assert_eq!(
        (seeded.categories, seeded.products, seeded.warehouses),
        (25, 500, 3)
    );
    assert_eq!(
        emporium_catalog::seed::seed(app.store.as_ref())
            .await
            .unwrap()
            .products,
        0,
        "only into an empty catalog"
    );
    let tree = tree(&app).await;
    let roots = tree.as_array().unwrap();
    assert_eq!(roots.len(), 5);
    assert!(
        roots
            .iter()
            .all(|root| root["children"].as_array().unwrap().len() == 4)
    );
    let tea = roots.iter().find(|c| c["name"] == "Tea & Coffee").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let query = "limit=100&in_stock=true&facets=true";
    let page = json_of(app.get(&format!("/api/v1/products?category={tea}&{query}"))).await;
    let items = page["items"].as_array().unwrap();
    assert!(items.len() > 50 && items.len() <= 100, "{}", items.len());
    assert!(items.iter().all(|p| p["available"].as_i64().unwrap() > 0));
    assert!(page["facets"]["origin"].as_object().unwrap().len() > 1);
    assert!(!skus(&app, "q=sencha").await.is_empty());
}
both!(the_demo_catalog_is_browsable);

async fn list_error(app: &TestApp, query: &str) -> Vec<String> {
    let r = send(app.get(&format!("/api/v1/products?{query}"))).await;
    assert_eq!(r.status(), 422, "{query}");
    fields(&problem(r, 422).await)
}

async fn hostile_search_input_answers_422_never_500(app: TestApp) {
    let tea = coloured(&app, "Tea", &[json!({"name": "grams", "type": "number"})]).await;
    app.product("SENCHA", &tea, json!({"colour": "green", "grams": 100}))
        .await;

    // Control characters in the search text (NUL broke SQLite's FTS).
    for q in ["%00", "green%00tea", "%01", "tea%0A", "%7F", "%C2%85"] {
        assert_eq!(list_error(&app, &format!("q={q}")).await, ["q"], "q={q}");
    }
    let long = "a".repeat(201);
    assert_eq!(list_error(&app, &format!("q={long}")).await, vec!["q"]);
    let longest = format!("q={}", "a".repeat(200));
    assert_eq!(skus(&app, &longest).await, Vec::<String>::new());

    // Too many attribute filters (a thousand made SQLite's expression tree too large).
    for n in [21, 1000] {
        let query: Vec<String> = (0..n).map(|i| format!("attr.a{i}=1")).collect();
        let named = list_error(&app, &query.join("&")).await;
        assert_eq!(named, vec!["attr"], "{n} filters");
    }
    let twenty: Vec<String> = (0..19).map(|i| format!("attr.a{i}=1")).collect();
    assert_eq!(
        list_error(&app, &format!("{}&attr.colour=green", twenty.join("&")))
            .await
            .len(),
        19,
        "20 filters are parsed; the 19 undefined ones are named"
    );

    // Only attributes some category declares filterable.
    let too_long = format!("attr.colour={}", "g".repeat(201));
    for (query, field) in [
        ("attr.nothing=1", "attr.nothing"),
        ("attr.grams=100", "attr.grams"),
        ("attr.colour=gr%00een", "attr.colour"),
        (too_long.as_str(), "attr.colour"),
    ] {
        assert_eq!(list_error(&app, query).await, [field], "{query}");
    }
    assert_eq!(skus(&app, "attr.colour=green").await, vec!["SENCHA"]);
}
both!(hostile_search_input_answers_422_never_500);

async fn currencies_are_active_iso_4217_codes(app: TestApp) {
    let cat = app.category("Coins", None, json!([])).await;
    let create = |sku: &str, currency: &str| {
        let price = json!({"amount": 100, "currency": currency});
        post_product(
            &app,
            json!({"sku": sku, "name": "Coin", "price": price, "category_id": cat}),
        )
    };
    for (i, code) in ["ZZZ", "XXX", "XTS", "XAU", "QQQ", "HRK"]
        .into_iter()
        .enumerate()
    {
        let body = problem(create(&format!("BAD-{i}"), code).await, 422).await;
        assert_eq!(fields(&body), vec!["price"], "{code}");
    }
    for code in ["USD", "JPY", "CHF"] {
        let r = create(&format!("OK-{code}"), code).await;
        assert_eq!(r.status(), 201, "{code}");
    }
    let p = app.product("PATCHED", &cat, json!({})).await;
    let path = format!("/api/v1/products/{}", p["id"].as_str().unwrap());
    let xts = json!({"price": {"amount": 100, "currency": "XTS"}});
    let r = app.admin_json(Method::PATCH, &path, xts).await;
    assert_eq!(fields(&problem(r, 422).await), vec!["price"]);
}
both!(currencies_are_active_iso_4217_codes);

async fn image_urls_are_public_https_without_credentials(app: TestApp) {
    let cat = app.category("Pictures", None, json!([])).await;
    let create = |sku: String, url: &str| {
        let body = json!({"sku": sku, "name": "Picture", "price": {"amount": 100, "currency": "EUR"},
                          "category_id": cat, "images": [url]});
        post_product(&app, body)
    };
    let refused = [
        "https://user:secret@images.example.com/a.jpg",
        "https://user@images.example.com/a.jpg",
        "https://images.example.com:443@127.0.0.1/a.jpg",
        "https://localhost/a.jpg",
        "https://LOCALHOST./a.jpg",
        "https://shop.localhost/a.jpg",
        "https://127.0.0.1/a.jpg",
        "https://127.1/a.jpg",
        "https://0x7f000001/a.jpg",
        "https://10.1.2.3/a.jpg",
        "https://172.16.0.1/a.jpg",
        "https://192.168.1.1/a.jpg",
        "https://169.254.169.254/latest/meta-data",
        "https://0.0.0.0/a.jpg",
        "https://[::1]/a.jpg",
        "https://[::]/a.jpg",
        "https://[fd00::1]/a.jpg",
        "https://[fe80::1]/a.jpg",
        "https://[::ffff:127.0.0.1]/a.jpg",
        "https://[::ffff:10.0.0.1]/a.jpg",
        "https://[2002:7f00:1::]/a.jpg",
        "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/a.jpg",
        "https://[64:ff9b:1::a9fe:a9fe]/a.jpg",
        "https://198.18.0.1/a.jpg",
        "https://240.0.0.1/a.jpg",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://printer.local/a.jpg",
        "https://intranet/a.jpg",
        "https://img.example.com\\@evil.com/a.jpg",
        "http://images.example.com/a.jpg",
        "https://",
    ];
    for (i, url) in refused.into_iter().enumerate() {
        let body = problem(create(format!("BAD-{i}"), url).await, 422).await;
        assert_eq!(fields(&body), vec!["images"], "{url}");
    }
    for (i, url) in [
        "https://images.example.com/a.jpg",
        "https://cdn.example.org:8443/x/y.png?size=2#top",
        "https://93.184.215.14/a.jpg",
        "https://[2606:4700::1111]/a.jpg",
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(create(format!("OK-{i}"), url).await.status(), 201, "{url}");
    }
}
both!(image_urls_are_public_https_without_credentials);

async fn patches_without_a_known_field_change_nothing(app: TestApp) {
    let (cat, p, path) = lone_product(&app, "Lamps", "LAMP-1").await;
    let category = format!("/api/v1/categories/{cat}");
    for (path, body) in [
        (&path, json!({})),
        (&path, json!({"nmae": "Typo"})),
        (&path, json!({"colour": "red", "version": 7})),
        (&category, json!({})),
        (&category, json!({"title": "Typo"})),
    ] {
        let r = app.admin_json(Method::PATCH, path, body.clone()).await;
        assert_eq!(
            fields(&problem(r, 422).await),
            vec!["body"],
            "{path}: {body}"
        );
    }
    let after = json_of(app.get(&path)).await;
    assert_eq!(after["version"], 1, "no version bump");
    assert_eq!(after["updated_at"], p["updated_at"]);
    assert_eq!(after["name"], p["name"]);
    assert_eq!(tree(&app).await[0]["name"], "Lamps");
    // A known field still works, and is stored.
    let renamed = patch_category(&app, &cat, json!({"name": "Lights"})).await;
    assert_eq!(renamed["name"], "Lights");
    let tree_now = tree(&app).await;
    assert_eq!(tree_now[0]["name"], "Lights", "{tree_now}");
    assert_eq!(tree_now[0]["id"], cat.as_str(), "{tree_now}");
}
both!(patches_without_a_known_field_change_nothing);

async fn if_match_star_asks_only_that_the_product_exists(app: TestApp) {
    let (_, _, path) = lone_product(&app, "Rugs", "RUG-1").await;
    let patch = |name: &str| patch_if(&app, &path, "*", json!({"name": name}));
    let r = patch("Red rug").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"2\"");
    let r = patch("Blue rug").await;
    assert_eq!(r.status(), 200, "any current version matches *");
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 3);
    // If-Match compares strongly: a weak tag matches nothing, even the current one.
    let green = json!({"name": "Green rug"});
    let r = patch_if(&app, &path, "W/\"3\"", green.clone()).await;
    let weak = problem_of(r, 412, "stale-version").await;
    assert!(
        weak["detail"].as_str().unwrap().contains("weak tag"),
        "the answer says why the current version does not match: {weak}"
    );
    // A malformed weak tag, or If-Match sent twice, is a bad header, not a stale one.
    for headers in [vec!["W/xyz"], vec!["\"3\"", "\"10\""], vec!["*", "\"1\""]] {
        let mut request = app.as_admin(Method::PATCH, &path);
        for h in &headers {
            request = request.header("if-match", *h);
        }
        let bad = refused_of(request.json(&green), 422, "validation-error").await;
        assert_eq!(bad["errors"][0]["field"], "If-Match", "{headers:?}: {bad}");
    }
    assert_eq!(patch_if(&app, &path, "\"3\"", green).await.status(), 200);

    assert_eq!(admin_delete(&app, &path).await.status(), 204);
    problem(patch("Gone").await, 404).await;
}
both!(if_match_star_asks_only_that_the_product_exists);

/// A NUL anywhere in a body (PostgreSQL refuses it in text and JSON) is a 422
/// naming the body, never a 500, and nothing is stored.
async fn nul_characters_in_bodies_answer_422(app: TestApp) {
    let category = app.category("Nul", None, json!([])).await;
    let product = |sku: &str, name: &str, description: &str| {
        json!({"sku": sku, "name": name, "description": description,
               "price": {"amount": 100, "currency": "EUR"}, "category_id": category, "attributes": {}})
    };
    let warehouse = json!({"code": "NUL", "name": "x", "address": {"line1": "\u{0}"}});
    for (path, body) in [
        ("/api/v1/products", product("NUL-1", "a\u{0}b", "x")),
        ("/api/v1/products", product("NUL-2", "ok", "x\u{0}")),
        ("/api/v1/warehouses", warehouse),
    ] {
        let r = app.admin_json(reqwest::Method::POST, path, body).await;
        let p = problem(r, 422).await;
        assert_eq!(fields(&p), ["body"], "{path}");
    }
    let listed = json_of(app.get(&format!("/api/v1/products?category={category}"))).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 0, "{listed}");
    let warehouses = json_of(app.as_admin(Method::GET, "/api/v1/warehouses")).await;
    assert!(!warehouses.to_string().contains("\"NUL\""), "{warehouses}");
}
both!(nul_characters_in_bodies_answer_422);

/// Names, descriptions, attribute text, image URLs and addresses refuse what
/// would hide or disguise what they say.
async fn catalog_text_refuses_hidden_characters(app: TestApp) {
    let category = app
        .category(
            "Texts",
            None,
            json!([{"name": "note", "type": "text", "required": false, "filterable": false}]),
        )
        .await;
    let product = |name: &str, description: &str, attributes: Value, images: Value| {
        json!({"sku": format!("TXT-{}", new_id()), "name": name, "description": description,
               "price": {"amount": 100, "currency": "EUR"}, "category_id": category,
               "attributes": attributes, "images": images})
    };
    let named = |name: &str| product(name, "x", json!({}), json!([]));
    let described = |description: &str| product("Tea", description, json!({}), json!([]));
    let noted = |note: &str| product("Tea", "x", json!({"note": note}), json!([]));
    let pictured = |url: &str| product("Tea", "x", json!({}), json!([url]));
    for (body, field) in [
        (named("Tea\u{202E}kcab"), "name"),
        (named("\u{200B}"), "name"),
        (named("Tea\u{7}"), "name"),
        (described("red \u{1b}[31m"), "description"),
        (noted("a\u{2066}b"), "attributes.note"),
        (pictured("https://img.example.com/a.jpg\r\nX: y"), "images"),
        (pictured("https://img.example.com/a b.jpg"), "images"),
    ] {
        let p = problem(post_product(&app, body).await, 422).await;
        assert!(fields(&p).contains(&field.to_owned()), "{field}: {p}");
    }
    // Line breaks in a description are prose, and fine.
    let prose = product(
        "Tea",
        "Line one.\nLine two.",
        json!({"note": "ok"}),
        json!([]),
    );
    assert_eq!(post_product(&app, prose).await.status(), 201);
    let hidden = json!({"name": "\u{200B} "});
    let r = app
        .admin_json(Method::POST, "/api/v1/categories", hidden)
        .await;
    assert!(fields(&problem(r, 422).await).contains(&"name".to_owned()));
    for address in [
        json!({"line1": {"nested": 1}}),
        json!({"line1": "a\u{202E}b"}),
    ] {
        let body = json!({"code": "TXT", "name": "Texts", "address": address});
        let r = app
            .admin_json(Method::POST, "/api/v1/warehouses", body)
            .await;
        assert!(fields(&problem(r, 422).await).contains(&"address".to_owned()));
    }
}
both!(catalog_text_refuses_hidden_characters);

/// An array where an object belongs is refused at any depth (serde alone
/// would read `[1, "EUR"]` as a price's fields in order), and nothing changes.
async fn arrays_are_not_objects_at_any_depth(app: TestApp) {
    let (_, _, path) = lone_product(&app, "Arrays", "ARR-1").await;
    let price = json!({"price": [1, "EUR"]});
    let body = problem(app.admin_json(Method::PATCH, &path, price).await, 422).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with("price: "), "{detail}");
    assert!(detail.contains("expected an object"), "{detail}");
    let rows = json!({"name": "Rows", "attributes": [["color", "enum", false, true, ["a"]]]});
    let r = app
        .admin_json(Method::POST, "/api/v1/categories", rows)
        .await;
    problem(r, 422).await;
    let now = json_of(app.get(&path)).await;
    assert_eq!(now["price"]["amount"], 1999);
    assert_eq!(now["version"], 1);
}
both!(arrays_are_not_objects_at_any_depth);

/// Creating in a category while it is deleted never answers 500: the write
/// either wins (and the delete is refused for it), or finds the category gone
/// (422 before, 409 `reference-gone` when the delete commits between the
/// check and the insert) and nothing is left in a deleted category.
async fn writes_racing_a_category_delete_never_fail_with_500(app: TestApp) {
    for round in 0..15 {
        let category = app
            .category(&format!("Doomed {round}"), None, json!([]))
            .await;
        let product = json!({"sku": format!("DOOM-{round}"), "name": "x", "description": "x",
                             "price": {"amount": 100, "currency": "EUR"}, "category_id": category});
        let create_product = post_product(&app, product);
        let child = json!({"name": format!("Child {round}"), "parent_id": category});
        let create_child = app.admin_json(Method::POST, "/api/v1/categories", child);
        let delete = send(app.as_admin(Method::DELETE, &format!("/api/v1/categories/{category}")));
        let (product, child, deleted) = tokio::join!(create_product, create_child, delete);
        let outcome = |r: Response| async move {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body["type"].as_str().unwrap_or_default().to_owned())
        };
        let (product, child, deleted) = (
            outcome(product).await,
            outcome(child).await,
            outcome(deleted).await,
        );
        let writes = [("product", &product), ("child", &child)];
        for (what, (status, kind)) in writes {
            // Lost to the delete: the category was gone at the check (422,
            // the body names no category) or between the check and the
            // insert (409 reference-gone).
            let lost = (*status == 422 && kind == "/problems/validation-error")
                || (*status == 409 && kind == "/problems/reference-gone");
            assert!(
                *status == 201 || lost,
                "round {round}: {what} {status} {kind}"
            );
        }
        match deleted {
            (204, _) => {
                // The category is gone: nothing may have been created in it.
                assert_ne!(
                    product.0, 201,
                    "round {round}: a product in a deleted category"
                );
                assert_ne!(child.0, 201, "round {round}: a child of a deleted category");
                let again = app.as_admin(Method::DELETE, &format!("/api/v1/categories/{category}"));
                assert_eq!(send(again).await.status(), 404, "round {round}");
            }
            (409, kind) => {
                let blocked_by = match kind.as_str() {
                    "/problems/category-has-products" => product.0,
                    "/problems/category-has-children" => child.0,
                    other => panic!("round {round}: delete refused as {other}"),
                };
                assert_eq!(
                    blocked_by, 201,
                    "round {round}: refused for a write that lost"
                );
            }
            other => panic!("round {round}: delete answered {other:?}"),
        }
    }
}
both!(writes_racing_a_category_delete_never_fail_with_500);

/// A deleted product is off sale everywhere: gone from every listing and
/// search (though its row and its search index entry stay), from its own
/// routes, and from reservations (422 naming it; a basket with it reserves
/// nothing).
async fn deleted_products_leave_lists_search_and_reservations(app: TestApp) {
    let tea = coloured(&app, "Retired", &[]).await;
    let retired = [
        json!({"sku": "KEPT", "name": "Kept green tea", "description": "Still on sale.",
               "price": 1000, "attributes": {"colour": "green"}}),
        json!({"sku": "GONE", "name": "Retired green tea", "description": "Taken off sale.",
               "price": 1000, "attributes": {"colour": "green"}}),
    ];
    let [kept, gone] = <[String; 2]>::try_from(create(&app, &tea, &retired).await).unwrap();
    let w = app.warehouse("RETIRED-W").await;
    for p in [&kept, &gone] {
        assert_eq!(app.set_stock(&w, p, 5).await.status(), 200);
    }
    let queries = [
        "limit=100".to_owned(),
        "q=green".to_owned(),
        format!("category={tea}"),
        "in_stock=true".to_owned(),
        "attr.colour=green".to_owned(),
        "sort=price".to_owned(),
        "min_price=1000&max_price=1000".to_owned(),
    ];
    // Both are found everywhere first, so that one missing later means something.
    for q in &queries {
        let mut found = skus(&app, q).await;
        found.sort();
        assert_eq!(found, ["GONE", "KEPT"], "{q}");
    }
    assert_eq!(skus(&app, "q=retired").await, ["GONE"]);

    let path = format!("/api/v1/products/{gone}");
    assert_eq!(admin_delete(&app, &path).await.status(), 204);
    for q in &queries {
        assert_eq!(skus(&app, q).await, ["KEPT"], "{q}");
    }
    assert_eq!(skus(&app, "q=retired").await, Vec::<String>::new());
    let page = json_of(app.get("/api/v1/products?attr.colour=green&facets=true")).await;
    assert_eq!(page["facets"]["colour"], json!({"green": 1}), "{page}");

    refused(app.get(&path), 404).await;
    refused(app.as_admin(Method::GET, &format!("{path}/stock")), 404).await;
    problem(app.set_stock(&w, &gone, 9).await, 404).await;
    let back = json!({"name": "Back again"});
    problem(app.admin_json(Method::PATCH, &path, back).await, 404).await;

    let alone = json!([{"product_id": gone, "quantity": 1}]);
    let body = problem(app.reserve(&new_id(), alone).await, 422).await;
    let no_product = json!([{"field": "items", "message": format!("no product {gone}")}]);
    assert_eq!(body["errors"], no_product);
    let basket = json!([{"product_id": kept, "quantity": 1}, {"product_id": gone, "quantity": 1}]);
    let body = problem(app.reserve(&new_id(), basket).await, 422).await;
    assert_eq!(fields(&body), ["items"]);
    assert!(body["detail"].as_str().unwrap().contains(&gone), "{body}");
    assert_eq!(
        app.stock(&kept).await[0]["reserved"],
        0,
        "nothing was reserved"
    );
    let journal = app.movements(None, 100).await;
    assert!(
        journal.iter().all(|m| m["kind"] != "reserve"),
        "nothing was reserved: {journal:?}"
    );
}
both!(deleted_products_leave_lists_search_and_reservations);

/// Checks that each version of a product was made on the one before: a
/// patch names either the name or the description, so from one version to
/// the next exactly one of them changes. A patch merged onto an older
/// version (a lost update) changes both, undoing the patch in between.
fn assert_each_version_builds_on_the_last(versions: &BTreeMap<i64, Value>) {
    let last = *versions.keys().next_back().unwrap();
    assert_eq!(
        versions.keys().copied().collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>(),
        "every version is one accepted patch"
    );
    let states: Vec<&Value> = versions.values().collect();
    for pair in states.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        let renamed = before["name"] != after["name"];
        let redescribed = before["description"] != after["description"];
        assert!(
            renamed != redescribed,
            "version {} was not made on version {}: {before} then {after}",
            after["version"],
            before["version"]
        );
    }
}

/// Without `If-Match` a PATCH still never overwrites a change it did not
/// read: the handler merges the body onto the version it read and the store
/// writes only if that version is still current; otherwise 409
/// `concurrent-change`. Rounds of 16 concurrent patches run until one is
/// refused (a race may need a few rounds to overlap; when the check is
/// missing, none ever is).
async fn racing_patches_without_if_match_never_lose_an_update(app: TestApp) {
    let (_, created, path) = lone_product(&app, "Racing", "RACE-1").await;
    let mut versions: BTreeMap<i64, Value> = BTreeMap::new();
    versions.insert(1, created);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    let mut round = 0;
    while refused == 0 {
        assert!(
            Instant::now() < deadline,
            "{round} rounds of concurrent patches without If-Match, none refused"
        );
        let patches = (0..16).map(|i| {
            let body = if i % 2 == 0 {
                json!({"name": format!("Name {round}-{i}")})
            } else {
                json!({"description": format!("Description {round}-{i}")})
            };
            app.admin_json(Method::PATCH, &path, body)
        });
        for r in join_all(patches).await {
            match r.status().as_u16() {
                200 => {
                    let v: Value = r.json().await.unwrap();
                    let version = v["version"].as_i64().unwrap();
                    assert!(
                        versions.insert(version, v).is_none(),
                        "two patches made version {version}"
                    );
                }
                409 => {
                    let body = problem(r, 409).await;
                    assert_eq!(body["type"], "/problems/concurrent-change", "{body}");
                    refused += 1;
                }
                other => panic!("a patch answered {other}"),
            }
        }
        assert_each_version_builds_on_the_last(&versions);
        round += 1;
    }
    let (last, newest) = versions.iter().next_back().unwrap();
    let now = json_of(app.get(&path)).await;
    assert_eq!(now["version"], *last);
    assert_eq!(
        (&now["name"], &now["description"]),
        (&newest["name"], &newest["description"])
    );
}
both!(racing_patches_without_if_match_never_lose_an_update);
