//! Demo data: a catalog realistic enough to browse — 25 categories (5 with 4
//! sub-categories each) with attribute definitions, 500 products that satisfy
//! them, 3 warehouses and stock. Deterministic: the same data every time.

use emporium_messaging::outbox::Commit;
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::{AttributeDef, validate_attributes};
use crate::store::{
    Actor, CatalogStore, CategoryRecord, ProductWrite, StockChange, StockLevel, StockRow,
    WarehouseRecord,
};

/// What `seed` made.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    pub categories: usize,
    pub products: usize,
    pub warehouses: usize,
}

/// A small deterministic generator (64-bit LCG), so the demo shop is the same everywhere.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

struct Root {
    name: &'static str,
    attributes: Value,
    leaves: [(&'static str, &'static [&'static str]); 4],
}

fn roots() -> Vec<Root> {
    vec![
        Root {
            name: "Kitchen",
            attributes: json!([
                {"name": "material", "type": "enum", "values": ["steel", "ceramic", "glass", "wood", "cast-iron"], "required": true, "filterable": true},
                {"name": "dishwasher_safe", "type": "boolean", "filterable": true}
            ]),
            leaves: [
                (
                    "Cookware",
                    &[
                        "skillet",
                        "saucepan",
                        "stock pot",
                        "wok",
                        "casserole",
                        "griddle",
                    ],
                ),
                (
                    "Knives",
                    &[
                        "chef's knife",
                        "paring knife",
                        "bread knife",
                        "santoku",
                        "cleaver",
                        "knife block",
                    ],
                ),
                (
                    "Tableware",
                    &[
                        "dinner plate",
                        "bowl",
                        "mug",
                        "serving platter",
                        "teapot",
                        "pitcher",
                    ],
                ),
                (
                    "Storage",
                    &[
                        "canister",
                        "spice jar",
                        "bread bin",
                        "lunch box",
                        "butter dish",
                        "oil bottle",
                    ],
                ),
            ],
        },
        Root {
            name: "Tea & Coffee",
            attributes: json!([
                {"name": "origin", "type": "enum", "values": ["china", "india", "japan", "kenya", "colombia", "ethiopia"], "required": true, "filterable": true},
                {"name": "organic", "type": "boolean", "filterable": true},
                {"name": "grams", "type": "number"}
            ]),
            leaves: [
                (
                    "Green tea",
                    &[
                        "sencha",
                        "gyokuro",
                        "matcha",
                        "dragon well",
                        "gunpowder",
                        "genmaicha",
                    ],
                ),
                (
                    "Black tea",
                    &[
                        "assam",
                        "darjeeling",
                        "keemun",
                        "breakfast blend",
                        "earl grey",
                        "lapsang souchong",
                    ],
                ),
                (
                    "Coffee beans",
                    &[
                        "espresso roast",
                        "filter roast",
                        "single origin",
                        "house blend",
                        "decaf",
                        "mocha",
                    ],
                ),
                (
                    "Herbal",
                    &[
                        "chamomile",
                        "peppermint",
                        "rooibos",
                        "lemon verbena",
                        "hibiscus",
                        "ginger infusion",
                    ],
                ),
            ],
        },
        Root {
            name: "Garden",
            attributes: json!([
                {"name": "material", "type": "enum", "values": ["steel", "wood", "plastic", "stone", "terracotta"], "required": true, "filterable": true},
                {"name": "weatherproof", "type": "boolean", "filterable": true}
            ]),
            leaves: [
                (
                    "Tools",
                    &[
                        "spade",
                        "rake",
                        "pruning shears",
                        "trowel",
                        "hoe",
                        "watering can",
                    ],
                ),
                (
                    "Planters",
                    &[
                        "pot",
                        "trough",
                        "hanging basket",
                        "raised bed",
                        "window box",
                        "seed tray",
                    ],
                ),
                (
                    "Furniture",
                    &[
                        "bench",
                        "folding chair",
                        "table",
                        "lounger",
                        "parasol",
                        "hammock",
                    ],
                ),
                (
                    "Lighting",
                    &[
                        "lantern",
                        "string lights",
                        "solar stake",
                        "wall light",
                        "torch",
                        "candle holder",
                    ],
                ),
            ],
        },
        Root {
            name: "Books",
            attributes: json!([
                {"name": "language", "type": "enum", "values": ["en", "de", "fr", "es"], "required": true, "filterable": true},
                {"name": "hardcover", "type": "boolean", "filterable": true},
                {"name": "pages", "type": "number"}
            ]),
            leaves: [
                (
                    "Cooking",
                    &[
                        "cookbook",
                        "baking guide",
                        "kitchen almanac",
                        "recipe collection",
                        "bread primer",
                        "spice atlas",
                    ],
                ),
                (
                    "Gardening",
                    &[
                        "garden handbook",
                        "pruning manual",
                        "seed catalogue",
                        "vegetable guide",
                        "rose companion",
                        "compost primer",
                    ],
                ),
                (
                    "Travel",
                    &[
                        "city guide",
                        "hiking atlas",
                        "rail journey",
                        "island guide",
                        "road trip planner",
                        "phrasebook",
                    ],
                ),
                (
                    "Fiction",
                    &[
                        "novel",
                        "short stories",
                        "mystery",
                        "saga",
                        "novella",
                        "anthology",
                    ],
                ),
            ],
        },
        Root {
            name: "Clothing",
            attributes: json!([
                {"name": "size", "type": "enum", "values": ["xs", "s", "m", "l", "xl"], "required": true, "filterable": true},
                {"name": "colour", "type": "enum", "values": ["black", "white", "blue", "green", "red"], "required": true, "filterable": true}
            ]),
            leaves: [
                (
                    "Shirts",
                    &[
                        "oxford shirt",
                        "linen shirt",
                        "t-shirt",
                        "flannel shirt",
                        "polo",
                        "henley",
                    ],
                ),
                (
                    "Jackets",
                    &[
                        "rain jacket",
                        "down jacket",
                        "denim jacket",
                        "fleece",
                        "gilet",
                        "field coat",
                    ],
                ),
                (
                    "Socks",
                    &[
                        "wool socks",
                        "running socks",
                        "ankle socks",
                        "hiking socks",
                        "bed socks",
                        "cotton socks",
                    ],
                ),
                (
                    "Hats",
                    &[
                        "beanie",
                        "sun hat",
                        "flat cap",
                        "bucket hat",
                        "baseball cap",
                        "wool hat",
                    ],
                ),
            ],
        },
    ]
}

const ADJECTIVES: &[&str] = &[
    "Classic", "Everyday", "Heritage", "Nordic", "Rustic", "Studio", "Artisan", "Compact",
    "Deluxe", "Simple",
];

/// A value for each attribute definition, valid by construction.
fn attributes_for(defs: &[AttributeDef], dice: &mut Dice) -> Value {
    let mut map = serde_json::Map::new();
    for def in defs {
        let value = match def.kind {
            crate::domain::AttributeKind::Enum => {
                let values: Vec<&str> = def.values.iter().map(String::as_str).collect();
                json!(dice.pick(&values))
            }
            crate::domain::AttributeKind::Boolean => json!(dice.below(2) == 0),
            crate::domain::AttributeKind::Number => json!(50 + dice.below(950)),
            crate::domain::AttributeKind::Text => json!("standard"),
        };
        map.insert(def.name.clone(), value);
    }
    Value::Object(map)
}

fn slug(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Fills an empty catalog; does nothing when there are categories already.
pub async fn seed(store: &dyn CatalogStore) -> anyhow::Result<Seeded> {
    if !store.categories().await?.is_empty() {
        return Ok(Seeded::default());
    }
    let now = chrono::Utc::now().timestamp_millis();
    let mut dice = Dice(0x5eed);
    let mut seeded = Seeded::default();
    let mut warehouses = Vec::new();
    for (code, name, city) in [
        ("BER", "Berlin hub", "Berlin"),
        ("LYS", "Lyon depot", "Lyon"),
        ("MAD", "Madrid depot", "Madrid"),
    ] {
        let w = WarehouseRecord {
            id: Uuid::now_v7(),
            code: code.into(),
            name: name.into(),
            address: Json(json!({"city": city})),
            created_at: now,
        };
        store.insert_warehouse(&w).await?;
        warehouses.push(w.id);
        seeded.warehouses += 1;
    }
    let actor = Actor {
        who: "seed".into(),
        reason: "opening stock".into(),
    };
    for (r, root) in roots().into_iter().enumerate() {
        let root_id = Uuid::now_v7();
        let root_defs: Vec<AttributeDef> = serde_json::from_value(root.attributes.clone())?;
        store
            .insert_category(&CategoryRecord {
                id: root_id,
                parent_id: None,
                name: root.name.into(),
                slug: slug(root.name),
                path: format!("/{root_id}/"),
                position: r as i32,
                attributes: Json(root.attributes.clone()),
                created_at: now,
                updated_at: now,
            })
            .await?;
        seeded.categories += 1;
        for (l, (leaf, nouns)) in root.leaves.iter().enumerate() {
            let leaf_id = Uuid::now_v7();
            store
                .insert_category(&CategoryRecord {
                    id: leaf_id,
                    parent_id: Some(root_id),
                    name: (*leaf).into(),
                    slug: slug(leaf),
                    path: format!("/{root_id}/{leaf_id}/"),
                    position: l as i32,
                    attributes: Json(json!([])),
                    created_at: now,
                    updated_at: now,
                })
                .await?;
            seeded.categories += 1;
            for n in 0..25 {
                let noun = nouns[n % nouns.len()];
                let adjective = dice.pick(ADJECTIVES);
                let name = format!("{adjective} {noun}");
                let attributes = attributes_for(&root_defs, &mut dice);
                debug_assert!(
                    validate_attributes(&root_defs, attributes.as_object().expect("an object"))
                        .is_empty()
                );
                let product = ProductWrite {
                    id: Uuid::now_v7(),
                    sku: format!(
                        "{}-{}-{:03}",
                        &slug(root.name)[..3].to_uppercase(),
                        &slug(leaf)[..3].to_uppercase(),
                        n
                    ),
                    name: name.clone(),
                    description: format!(
                        "{name} from our {} range: {} {}, chosen for everyday use and made to last.",
                        leaf.to_lowercase(),
                        adjective.to_lowercase(),
                        noun
                    ),
                    price_amount: ((2 + dice.below(150)) * 100 - 1) as i64,
                    price_currency: "EUR".into(),
                    category_id: leaf_id,
                    attributes,
                    images: json!([format!(
                        "https://images.emporium.example/{}.jpg",
                        slug(&name)
                    )]),
                    low_stock_below: 5,
                };
                store
                    .insert_product(
                        &product,
                        Commit {
                            now,
                            events: &[crate::events::created(&product, None)],
                        },
                    )
                    .await?;
                seeded.products += 1;
                // About one product in ten is sold out; the rest are spread over warehouses.
                if dice.below(10) == 0 {
                    continue;
                }
                for w in &warehouses {
                    let on_hand = dice.below(40) as i64;
                    if on_hand > 0 {
                        let done = store
                            .change_stock(
                                StockRow {
                                    warehouse: *w,
                                    product: product.id,
                                },
                                StockLevel::Set(on_hand),
                                &actor,
                            )
                            .await?;
                        anyhow::ensure!(
                            matches!(done, StockChange::Done(_)),
                            "seeding stock failed"
                        );
                    }
                }
            }
        }
    }
    Ok(seeded)
}
