//! Categories and products.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, fields, new_id, problem, problem_of};
use emporium_testkit::both;

async fn categories_form_a_tree_and_only_admins_change_it(app: TestApp) {
    let food = app
        .category(
            "Food",
            None,
            json!([{"name": "organic", "type": "boolean", "filterable": true}]),
        )
        .await;
    let tea = app
        .category("Tea", Some(&food), json!([{"name": "origin", "type": "enum", "values": ["china", "india"], "required": true}]))
        .await;
    let tree: Value = app
        .get("/api/v1/categories")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tree[0]["name"], "Food");
    assert_eq!(tree[0]["slug"], "food");
    assert_eq!(tree[0]["children"][0]["id"], tea.as_str());
    assert_eq!(tree[0]["children"][0]["attributes"][0]["name"], "origin");

    let body = json!({"name": "Nope"});
    problem(
        app.post("/api/v1/categories")
            .json(&body)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    problem(
        app.post("/api/v1/categories")
            .bearer_auth(&app.customer)
            .json(&body)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    problem(
        app.post("/api/v1/categories")
            .bearer_auth(&app.orders)
            .json(&body)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    let body = problem(
        app.admin_json(Method::POST, "/api/v1/categories", json!({"name": "Food"}))
            .await,
        409,
    )
    .await;
    assert_eq!(body["type"], "/problems/slug-taken");
    let bad = app
        .admin_json(
            Method::POST,
            "/api/v1/categories",
            json!({"name": "", "attributes": [{"name": "x", "type": "enum"}]}),
        )
        .await;
    let body = problem(bad, 422).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["name", "slug", "attributes"]);

    let r = app
        .admin_json(
            Method::PATCH,
            &format!("/api/v1/categories/{tea}"),
            json!({"name": "Teas", "position": 3}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let patched: Value = r.json().await.unwrap();
    assert_eq!(
        (&patched["name"], &patched["position"], &patched["slug"]),
        (&json!("Teas"), &json!(3), &json!("tea")),
        "{patched}"
    );
    // Stored, not only echoed: the tree read afterwards shows the change, and
    // what the patch did not name (slug, attributes) is kept.
    let tree: Value = app
        .get("/api/v1/categories")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let node = &tree[0]["children"][0];
    assert_eq!(node["id"], tea.as_str(), "{tree}");
    assert_eq!(node["name"], "Teas", "{tree}");
    assert_eq!(node["position"], 3, "{tree}");
    assert_eq!(node["slug"], "tea", "{tree}");
    assert_eq!(node["attributes"][0]["name"], "origin", "{tree}");
    let r = app
        .admin_json(
            Method::PATCH,
            &format!("/api/v1/categories/{tea}"),
            json!({"slug": "loose-tea"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let tree: Value = app
        .get("/api/v1/categories")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tree[0]["children"][0]["slug"], "loose-tea", "{tree}");
    assert_eq!(tree[0]["children"][0]["name"], "Teas", "{tree}");
    problem(
        app.admin_json(
            Method::PATCH,
            "/api/v1/categories/01900000-0000-7000-8000-000000000000",
            json!({}),
        )
        .await,
        404,
    )
    .await;

    // A category with products, or with children, stays.
    app.product("TEA-1", &tea, json!({"origin": "china"})).await;
    let body = problem(
        app.as_admin(Method::DELETE, &format!("/api/v1/categories/{tea}"))
            .send()
            .await
            .unwrap(),
        409,
    )
    .await;
    assert_eq!(body["type"], "/problems/category-has-products");
    let body = problem(
        app.as_admin(Method::DELETE, &format!("/api/v1/categories/{food}"))
            .send()
            .await
            .unwrap(),
        409,
    )
    .await;
    assert_eq!(body["type"], "/problems/category-has-children");
    let empty = app.category("Empty", None, json!([])).await;
    assert_eq!(
        app.as_admin(Method::DELETE, &format!("/api/v1/categories/{empty}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    problem(
        app.as_admin(Method::DELETE, &format!("/api/v1/categories/{empty}"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}
both!(categories_form_a_tree_and_only_admins_change_it);

async fn products_are_validated_against_their_category_and_its_ancestors(app: TestApp) {
    let food = app
        .category(
            "Food",
            None,
            json!([{"name": "organic", "type": "boolean"}]),
        )
        .await;
    let tea = app
        .category("Tea", Some(&food), json!([{"name": "origin", "type": "enum", "values": ["china", "india"], "required": true}]))
        .await;
    let created = app
        .product(
            "TEA-GREEN",
            &tea,
            json!({"origin": "china", "organic": true}),
        )
        .await;
    assert_eq!(created["version"], 1);
    assert_eq!(created["available"], 0);
    assert_eq!(created["price"], json!({"amount": 1999, "currency": "EUR"}));

    let bad = app
        .admin_json(
            Method::POST,
            "/api/v1/products",
            json!({"sku": "bad sku!", "name": "", "price": {"amount": -5, "currency": "euro"}, "category_id": tea,
                   "attributes": {"origin": "peru", "organic": "yes", "colour": "green"}, "images": ["http://x"]}),
        )
        .await;
    let body = problem(bad, 422).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "sku",
        "name",
        "price",
        "images",
        "attributes.organic",
        "attributes.origin",
        "attributes.colour",
    ] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
    let missing = app
        .admin_json(Method::POST, "/api/v1/products", json!({"sku": "X"}))
        .await;
    assert_eq!(
        problem(missing, 422).await["errors"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let dup = app
        .admin_json(
            Method::POST,
            "/api/v1/products",
            json!({"sku": "TEA-GREEN", "name": "Again", "price": {"amount": 1, "currency": "EUR"}, "category_id": tea,
                   "attributes": {"origin": "india"}}),
        )
        .await;
    assert_eq!(problem(dup, 409).await["type"], "/problems/sku-taken");
    problem(
        app.post("/api/v1/products")
            .bearer_auth(&app.customer)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
}
both!(products_are_validated_against_their_category_and_its_ancestors);

async fn product_updates_use_optimistic_concurrency(app: TestApp) {
    let cat = app.category("Books", None, json!([])).await;
    let p = app.product("BOOK-1", &cat, json!({})).await;
    let path = format!("/api/v1/products/{}", p["id"].as_str().unwrap());
    let r = app.get(&path).send().await.unwrap();
    assert_eq!(r.headers()["etag"], "\"1\"");

    let r = app
        .as_admin(Method::PATCH, &path)
        .header("if-match", "\"1\"")
        .json(&json!({"name": "Renamed", "price": {"amount": 2500, "currency": "EUR"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"2\"");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["name"], "Renamed");
    assert_eq!(v["price"]["amount"], 2500);
    assert_eq!(v["sku"], "BOOK-1", "fields not sent are kept");

    // Someone who read version 1 is refused.
    let stale = app
        .as_admin(Method::PATCH, &path)
        .header("if-match", "\"1\"")
        .json(&json!({"name": "Lost update"}))
        .send()
        .await
        .unwrap();
    let body = problem(stale, 412).await;
    assert!(body["detail"].as_str().unwrap().contains('2'));
    problem(
        app.as_admin(Method::PATCH, &path)
            .header("if-match", "soon")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;

    assert_eq!(
        app.as_admin(Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    problem(app.get(&path).send().await.unwrap(), 404).await;
    problem(
        app.as_admin(Method::DELETE, &path).send().await.unwrap(),
        404,
    )
    .await;
    problem(
        app.get("/api/v1/products/not-an-id").send().await.unwrap(),
        400,
    )
    .await;
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
        let page: Value = app.get(&path).send().await.unwrap().json().await.unwrap();
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
    let all: Value = app
        .get("/api/v1/products?limit=100")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    problem(
        app.get("/api/v1/products?limit=0").send().await.unwrap(),
        422,
    )
    .await;
    problem(
        app.get("/api/v1/products?cursor=zzz").send().await.unwrap(),
        422,
    )
    .await;
    // A parameter given twice is refused, whichever copy is the bad one.
    for (query, field) in [
        ("limit=abc&limit=2", "limit"),
        ("limit=2&limit=2", "limit"),
        ("sort=bogus&sort=price", "sort"),
        ("cursor=bzo1&cursor=", "cursor"),
    ] {
        let body = problem(
            app.get(&format!("/api/v1/products?{query}"))
                .send()
                .await
                .unwrap(),
            422,
        )
        .await;
        let named: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(named.contains(&field), "{query}: {body}");
    }
    problem(
        app.get("/api/v1/products?category=01900000-0000-7000-8000-000000000000")
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}
both!(products_list_by_category_subtree_in_pages);

async fn create(
    app: &TestApp,
    sku: &str,
    name: &str,
    description: &str,
    price: i64,
    category: &str,
    attributes: Value,
) -> String {
    let r = app
        .admin_json(
            Method::POST,
            "/api/v1/products",
            json!({"sku": sku, "name": name, "description": description,
                   "price": {"amount": price, "currency": "EUR"}, "category_id": category, "attributes": attributes}),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn skus(app: &TestApp, query: &str) -> Vec<String> {
    let r = app
        .get(&format!("/api/v1/products?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{query}");
    let page: Value = r.json().await.unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sku"].as_str().unwrap().to_owned())
        .collect()
}

async fn search_ranks_filters_sorts_and_counts_facets(app: TestApp) {
    let tea = app
        .category(
            "Tea",
            None,
            json!([{"name": "colour", "type": "enum", "values": ["green", "black"], "filterable": true},
                   {"name": "organic", "type": "boolean", "filterable": true},
                   {"name": "grams", "type": "number"}]),
        )
        .await;
    let sencha = create(
        &app,
        "SENCHA",
        "Sencha green tea",
        "Steamed leaves from Shizuoka.",
        1200,
        &tea,
        json!({"colour": "green", "organic": true, "grams": 100}),
    )
    .await;
    create(
        &app,
        "ASSAM",
        "Assam breakfast",
        "A malty black tea; pairs with green apples.",
        800,
        &tea,
        json!({"colour": "black", "organic": false, "grams": 250}),
    )
    .await;
    create(
        &app,
        "MATCHA",
        "Matcha green tea powder",
        "Stone-ground.",
        2500,
        &tea,
        json!({"colour": "green", "organic": false, "grams": 30}),
    )
    .await;
    let w = app.warehouse("TEA-W").await;
    assert_eq!(app.set_stock(&w, &sencha, 3).await.status(), 200);

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

    assert_eq!(
        skus(&app, "sort=price").await,
        vec!["ASSAM", "SENCHA", "MATCHA"]
    );
    assert_eq!(
        skus(&app, "sort=-price").await,
        vec!["MATCHA", "SENCHA", "ASSAM"]
    );
    assert_eq!(
        skus(&app, "min_price=1000&max_price=2000").await,
        vec!["SENCHA"]
    );
    assert_eq!(skus(&app, "in_stock=true").await, vec!["SENCHA"]);
    assert_eq!(
        skus(&app, "attr.colour=green&sort=price").await,
        vec!["SENCHA", "MATCHA"]
    );
    assert_eq!(skus(&app, "attr.organic=true").await, vec!["SENCHA"]);
    assert_eq!(
        skus(&app, &format!("q=green&category={tea}&attr.organic=false")).await,
        vec!["MATCHA", "ASSAM"]
    );

    let page: Value = app
        .get("/api/v1/products?q=green")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["facets"],
        json!({}),
        "facets are counted only when asked for"
    );
    let page: Value = app
        .get("/api/v1/products?q=green&facets=true")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["facets"]["colour"], json!({"green": 2, "black": 1}));
    assert_eq!(page["facets"]["organic"], json!({"true": 1, "false": 2}));
    assert!(
        page["facets"].get("grams").is_none(),
        "only filterable attributes are counted"
    );
    let page: Value = app
        .get("/api/v1/products?attr.colour=green&facets=true")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["facets"]["colour"],
        json!({"green": 2}),
        "facets count what matched"
    );

    for bad in [
        "sort=cheapest",
        "min_price=-1",
        "max_price=abc",
        "in_stock=maybe",
        "attr.Bad-Name=1",
        "facets=maybe",
    ] {
        problem(
            app.get(&format!("/api/v1/products?{bad}"))
                .send()
                .await
                .unwrap(),
            422,
        )
        .await;
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
    let tree: Value = app
        .get("/api/v1/categories")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tree.as_array().unwrap().len(), 5);
    assert!(
        tree.as_array()
            .unwrap()
            .iter()
            .all(|root| root["children"].as_array().unwrap().len() == 4)
    );
    let tea = tree
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Tea & Coffee")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let page: Value = app
        .get(&format!(
            "/api/v1/products?category={tea}&limit=100&in_stock=true&facets=true"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    assert!(items.len() > 50 && items.len() <= 100, "{}", items.len());
    assert!(items.iter().all(|p| p["available"].as_i64().unwrap() > 0));
    assert!(page["facets"]["origin"].as_object().unwrap().len() > 1);
    assert!(!skus(&app, "q=sencha").await.is_empty());
}
both!(the_demo_catalog_is_browsable);

async fn list_error(app: &TestApp, query: &str) -> Vec<String> {
    let r = app
        .get(&format!("/api/v1/products?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "{query}");
    fields(&problem(r, 422).await)
}

async fn hostile_search_input_answers_422_never_500(app: TestApp) {
    let tea = app
        .category(
            "Tea",
            None,
            json!([{"name": "colour", "type": "enum", "values": ["green", "black"], "filterable": true},
                   {"name": "grams", "type": "number"}]),
        )
        .await;
    app.product("SENCHA", &tea, json!({"colour": "green", "grams": 100}))
        .await;

    // Control characters in the search text (NUL broke SQLite's FTS).
    for q in ["%00", "green%00tea", "%01", "tea%0A", "%7F", "%C2%85"] {
        assert_eq!(
            list_error(&app, &format!("q={q}")).await,
            vec!["q"],
            "q={q}"
        );
    }
    let long = "a".repeat(201);
    assert_eq!(list_error(&app, &format!("q={long}")).await, vec!["q"]);
    assert_eq!(
        skus(&app, &format!("q={}", "a".repeat(200))).await,
        Vec::<String>::new()
    );

    // Too many attribute filters (a thousand made SQLite's expression tree too large).
    for n in [21, 1000] {
        let query: Vec<String> = (0..n).map(|i| format!("attr.a{i}=1")).collect();
        assert_eq!(
            list_error(&app, &query.join("&")).await,
            vec!["attr"],
            "{n} filters"
        );
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
    assert_eq!(
        list_error(&app, "attr.nothing=1").await,
        vec!["attr.nothing"]
    );
    assert_eq!(list_error(&app, "attr.grams=100").await, vec!["attr.grams"]);
    assert_eq!(
        list_error(&app, "attr.colour=gr%00een").await,
        vec!["attr.colour"]
    );
    assert_eq!(
        list_error(&app, &format!("attr.colour={}", "g".repeat(201))).await,
        vec!["attr.colour"]
    );
    assert_eq!(skus(&app, "attr.colour=green").await, vec!["SENCHA"]);
}
both!(hostile_search_input_answers_422_never_500);

async fn currencies_are_active_iso_4217_codes(app: TestApp) {
    let cat = app.category("Coins", None, json!([])).await;
    let create = |sku: &str, currency: &str| {
        app.admin_json(
            Method::POST,
            "/api/v1/products",
            json!({"sku": sku, "name": "Coin", "price": {"amount": 100, "currency": currency},
                   "category_id": cat}),
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
        assert_eq!(
            create(&format!("OK-{code}"), code).await.status(),
            201,
            "{code}"
        );
    }
    let p = app.product("PATCHED", &cat, json!({})).await;
    let r = app
        .admin_json(
            Method::PATCH,
            &format!("/api/v1/products/{}", p["id"].as_str().unwrap()),
            json!({"price": {"amount": 100, "currency": "XTS"}}),
        )
        .await;
    assert_eq!(fields(&problem(r, 422).await), vec!["price"]);
}
both!(currencies_are_active_iso_4217_codes);

async fn image_urls_are_public_https_without_credentials(app: TestApp) {
    let cat = app.category("Pictures", None, json!([])).await;
    let create = |sku: String, url: &str| {
        app.admin_json(
            Method::POST,
            "/api/v1/products",
            json!({"sku": sku, "name": "Picture", "price": {"amount": 100, "currency": "EUR"},
                   "category_id": cat, "images": [url]}),
        )
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
    let cat = app.category("Lamps", None, json!([])).await;
    let p = app.product("LAMP-1", &cat, json!({})).await;
    let path = format!("/api/v1/products/{}", p["id"].as_str().unwrap());
    for body in [
        json!({}),
        json!({"nmae": "Typo"}),
        json!({"colour": "red", "version": 7}),
    ] {
        let r = app.admin_json(Method::PATCH, &path, body.clone()).await;
        assert_eq!(fields(&problem(r, 422).await), vec!["body"], "{body}");
    }
    let after: Value = app.get(&path).send().await.unwrap().json().await.unwrap();
    assert_eq!(after["version"], 1, "no version bump");
    assert_eq!(after["updated_at"], p["updated_at"]);
    assert_eq!(after["name"], p["name"]);

    let category = format!("/api/v1/categories/{cat}");
    for body in [json!({}), json!({"title": "Typo"})] {
        let r = app.admin_json(Method::PATCH, &category, body.clone()).await;
        assert_eq!(fields(&problem(r, 422).await), vec!["body"], "{body}");
    }
    let tree: Value = app
        .get("/api/v1/categories")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tree[0]["name"], "Lamps");
    // A known field still works, and is stored.
    let r = app
        .admin_json(Method::PATCH, &category, json!({"name": "Lights"}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "Lights");
    let tree: Value = app
        .get("/api/v1/categories")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tree[0]["name"], "Lights", "{tree}");
    assert_eq!(tree[0]["id"], cat.as_str(), "{tree}");
}
both!(patches_without_a_known_field_change_nothing);

async fn if_match_star_asks_only_that_the_product_exists(app: TestApp) {
    let cat = app.category("Rugs", None, json!([])).await;
    let p = app.product("RUG-1", &cat, json!({})).await;
    let path = format!("/api/v1/products/{}", p["id"].as_str().unwrap());
    let patch = |name: &'static str| {
        app.as_admin(Method::PATCH, &path)
            .header("if-match", "*")
            .json(&json!({"name": name}))
            .send()
    };
    let r = patch("Red rug").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"2\"");
    let r = patch("Blue rug").await.unwrap();
    assert_eq!(r.status(), 200, "any current version matches *");
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 3);
    // If-Match compares strongly: a weak tag matches nothing, even the current one.
    let r = app
        .as_admin(Method::PATCH, &path)
        .header("if-match", "W/\"3\"")
        .json(&json!({"name": "Green rug"}))
        .send()
        .await
        .unwrap();
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
        let r = request
            .json(&json!({"name": "Green rug"}))
            .send()
            .await
            .unwrap();
        let bad = problem_of(r, 422, "validation-error").await;
        assert_eq!(bad["errors"][0]["field"], "If-Match", "{headers:?}: {bad}");
    }
    let r = app
        .as_admin(Method::PATCH, &path)
        .header("if-match", "\"3\"")
        .json(&json!({"name": "Green rug"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    assert_eq!(
        app.as_admin(Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    problem(patch("Gone").await.unwrap(), 404).await;
}
both!(if_match_star_asks_only_that_the_product_exists);

/// A NUL anywhere in a body (PostgreSQL refuses it in text and JSON) is a 422
/// naming the body, never a 500, and nothing is stored.
async fn nul_characters_in_bodies_answer_422(app: TestApp) {
    let category = app.category("Nul", None, json!([])).await;
    for (path, body) in [
        (
            "/api/v1/products",
            json!({"sku": "NUL-1", "name": "a\u{0}b", "description": "x",
                   "price": {"amount": 100, "currency": "EUR"}, "category_id": category, "attributes": {}}),
        ),
        (
            "/api/v1/products",
            json!({"sku": "NUL-2", "name": "ok", "description": "x\u{0}",
                   "price": {"amount": 100, "currency": "EUR"}, "category_id": category, "attributes": {}}),
        ),
        (
            "/api/v1/warehouses",
            json!({"code": "NUL", "name": "x", "address": {"line1": "\u{0}"}}),
        ),
    ] {
        let r = app.admin_json(reqwest::Method::POST, path, body).await;
        let p = problem(r, 422).await;
        assert_eq!(fields(&p), ["body"], "{path}");
    }
    let listed: Value = app
        .get(&format!("/api/v1/products?category={category}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0, "{listed}");
    let warehouses: Value = app
        .as_admin(Method::GET, "/api/v1/warehouses")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    for (body, field) in [
        (
            product("Tea\u{202E}kcab", "x", json!({}), json!([])),
            "name",
        ),
        (product("\u{200B}", "x", json!({}), json!([])), "name"),
        (product("Tea\u{7}", "x", json!({}), json!([])), "name"),
        (
            product("Tea", "red \u{1b}[31m", json!({}), json!([])),
            "description",
        ),
        (
            product("Tea", "x", json!({"note": "a\u{2066}b"}), json!([])),
            "attributes.note",
        ),
        (
            product(
                "Tea",
                "x",
                json!({}),
                json!(["https://img.example.com/a.jpg\r\nX: y"]),
            ),
            "images",
        ),
        (
            product(
                "Tea",
                "x",
                json!({}),
                json!(["https://img.example.com/a b.jpg"]),
            ),
            "images",
        ),
    ] {
        let r = app.admin_json(Method::POST, "/api/v1/products", body).await;
        let p = problem(r, 422).await;
        assert!(fields(&p).contains(&field.to_owned()), "{field}: {p}");
    }
    // Line breaks in a description are prose, and fine.
    let r = app
        .admin_json(
            Method::POST,
            "/api/v1/products",
            product(
                "Tea",
                "Line one.\nLine two.",
                json!({"note": "ok"}),
                json!([]),
            ),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = app
        .admin_json(
            Method::POST,
            "/api/v1/categories",
            json!({"name": "\u{200B} "}),
        )
        .await;
    assert!(fields(&problem(r, 422).await).contains(&"name".to_owned()));
    for address in [
        json!({"line1": {"nested": 1}}),
        json!({"line1": "a\u{202E}b"}),
    ] {
        let r = app
            .admin_json(
                Method::POST,
                "/api/v1/warehouses",
                json!({"code": "TXT", "name": "Texts", "address": address}),
            )
            .await;
        assert!(fields(&problem(r, 422).await).contains(&"address".to_owned()));
    }
}
both!(catalog_text_refuses_hidden_characters);

/// An array where an object belongs is refused at any depth (serde alone
/// would read `[1, "EUR"]` as a price's fields in order), and nothing changes.
async fn arrays_are_not_objects_at_any_depth(app: TestApp) {
    let category = app.category("Arrays", None, json!([])).await;
    let p = app.product("ARR-1", &category, json!({})).await;
    let path = format!("/api/v1/products/{}", p["id"].as_str().unwrap());
    let r = app
        .admin_json(Method::PATCH, &path, json!({"price": [1, "EUR"]}))
        .await;
    let body = problem(r, 422).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with("price: "), "{detail}");
    assert!(detail.contains("expected an object"), "{detail}");
    let r = app
        .admin_json(
            Method::POST,
            "/api/v1/categories",
            json!({"name": "Rows", "attributes": [["color", "enum", false, true, ["a"]]]}),
        )
        .await;
    problem(r, 422).await;
    let now: Value = app.get(&path).send().await.unwrap().json().await.unwrap();
    assert_eq!(now["price"]["amount"], 1999);
    assert_eq!(now["version"], 1);
}
both!(arrays_are_not_objects_at_any_depth);

/// Creating in a category while it is deleted never answers 500: the write
/// either wins, or finds the category gone (404 before, 409 `reference-gone`
/// when the delete commits between the check and the insert).
async fn writes_racing_a_category_delete_never_fail_with_500(app: TestApp) {
    for round in 0..15 {
        let category = app
            .category(&format!("Doomed {round}"), None, json!([]))
            .await;
        let create_product = app.admin_json(
            Method::POST,
            "/api/v1/products",
            json!({"sku": format!("DOOM-{round}"), "name": "x", "description": "x",
                   "price": {"amount": 100, "currency": "EUR"}, "category_id": category}),
        );
        let create_child = app.admin_json(
            Method::POST,
            "/api/v1/categories",
            json!({"name": format!("Child {round}"), "parent_id": category}),
        );
        let delete = app
            .as_admin(Method::DELETE, &format!("/api/v1/categories/{category}"))
            .send();
        let (product, child, deleted) = tokio::join!(create_product, create_child, delete);
        for status in [product.status(), child.status(), deleted.unwrap().status()] {
            assert!(!status.is_server_error(), "round {round}: {status}");
        }
    }
}
both!(writes_racing_a_category_delete_never_fail_with_500);

/// A deleted product is off sale everywhere: gone from every listing and
/// search (though its row and its search index entry stay), from its own
/// routes, and from reservations (422 naming it; a basket with it reserves
/// nothing).
async fn deleted_products_leave_lists_search_and_reservations(app: TestApp) {
    let tea = app
        .category(
            "Retired",
            None,
            json!([{"name": "colour", "type": "enum", "values": ["green", "black"], "filterable": true}]),
        )
        .await;
    let kept = create(
        &app,
        "KEPT",
        "Kept green tea",
        "Still on sale.",
        1000,
        &tea,
        json!({"colour": "green"}),
    )
    .await;
    let gone = create(
        &app,
        "GONE",
        "Retired green tea",
        "Taken off sale.",
        1000,
        &tea,
        json!({"colour": "green"}),
    )
    .await;
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
    assert_eq!(
        app.as_admin(Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    for q in &queries {
        assert_eq!(skus(&app, q).await, ["KEPT"], "{q}");
    }
    assert_eq!(skus(&app, "q=retired").await, Vec::<String>::new());
    let page: Value = app
        .get("/api/v1/products?attr.colour=green&facets=true")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["facets"]["colour"], json!({"green": 1}), "{page}");

    problem(app.get(&path).send().await.unwrap(), 404).await;
    problem(
        app.as_admin(Method::GET, &format!("{path}/stock"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    problem(app.set_stock(&w, &gone, 9).await, 404).await;
    problem(
        app.admin_json(Method::PATCH, &path, json!({"name": "Back again"}))
            .await,
        404,
    )
    .await;

    let body = problem(
        app.reserve(&new_id(), json!([{"product_id": gone, "quantity": 1}]))
            .await,
        422,
    )
    .await;
    assert_eq!(
        body["errors"],
        json!([{"field": "items", "message": format!("no product {gone}")}])
    );
    let body = problem(
        app.reserve(
            &new_id(),
            json!([{"product_id": kept, "quantity": 1}, {"product_id": gone, "quantity": 1}]),
        )
        .await,
        422,
    )
    .await;
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
    let cat = app.category("Racing", None, json!([])).await;
    let created = app.product("RACE-1", &cat, json!({})).await;
    let path = format!("/api/v1/products/{}", created["id"].as_str().unwrap());
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
    let now: Value = app.get(&path).send().await.unwrap().json().await.unwrap();
    assert_eq!(now["version"], *last);
    assert_eq!(
        (&now["name"], &now["description"]),
        (&newest["name"], &newest["description"])
    );
}
both!(racing_patches_without_if_match_never_lose_an_update);
