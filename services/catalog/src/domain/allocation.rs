//! Splitting a reservation across warehouses: all or nothing, from as few
//! warehouses as possible.

use std::collections::BTreeMap;

use uuid::Uuid;

/// Quantity to take from one warehouse for one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub warehouse_id: Uuid,
    pub product_id: Uuid,
    pub quantity: i64,
}

/// Chooses where to take `wanted` (product → quantity) from, given what each
/// warehouse has free (`(warehouse, product) → on_hand - reserved`).
///
/// A single warehouse that holds everything is used when there is one (the
/// one with the most free stock of the wanted items); otherwise warehouses are
/// taken greedily, each time the one that covers most of what is still
/// missing. `None` when the warehouses together do not hold enough: nothing
/// is reserved then.
pub fn allocate(
    wanted: &BTreeMap<Uuid, i64>,
    free: &BTreeMap<(Uuid, Uuid), i64>,
) -> Option<Vec<Allocation>> {
    let warehouses: Vec<Uuid> = {
        let mut w: Vec<Uuid> = free.keys().map(|(w, _)| *w).collect();
        w.dedup();
        w
    };
    let free_of = |w: Uuid, p: Uuid| free.get(&(w, p)).copied().unwrap_or(0).max(0);
    for (product, quantity) in wanted {
        let total: i64 = warehouses.iter().map(|w| free_of(*w, *product)).sum();
        if total < *quantity || *quantity <= 0 {
            return None;
        }
    }
    let mut missing = wanted.clone();
    let mut used: Vec<Uuid> = Vec::new();
    let mut plan = Vec::new();
    while missing.values().any(|q| *q > 0) {
        // The unused warehouse covering most of what is missing; ties go to the
        // lower id so the same request always gets the same plan.
        let best = warehouses
            .iter()
            .filter(|w| !used.contains(w))
            .map(|w| {
                let covered: i64 = missing.iter().map(|(p, q)| free_of(*w, *p).min(*q)).sum();
                (covered, std::cmp::Reverse(*w))
            })
            .max()?;
        let (covered, std::cmp::Reverse(warehouse)) = best;
        if covered == 0 {
            return None;
        }
        used.push(warehouse);
        for (product, quantity) in missing.iter_mut() {
            let take = free_of(warehouse, *product).min(*quantity);
            if take > 0 {
                plan.push(Allocation {
                    warehouse_id: warehouse,
                    product_id: *product,
                    quantity: take,
                });
                *quantity -= take;
            }
        }
    }
    Some(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn prefers_one_warehouse_that_has_everything() {
        let wanted = BTreeMap::from([(id(10), 2), (id(11), 1)]);
        let free = BTreeMap::from([
            ((id(1), id(10)), 5),
            ((id(2), id(10)), 2),
            ((id(2), id(11)), 1),
        ]);
        let plan = allocate(&wanted, &free).unwrap();
        assert!(plan.iter().all(|a| a.warehouse_id == id(2)), "{plan:?}");
    }

    #[test]
    fn splits_when_it_must_and_refuses_when_it_cannot() {
        let wanted = BTreeMap::from([(id(10), 7)]);
        let free = BTreeMap::from([
            ((id(1), id(10)), 5),
            ((id(2), id(10)), 3),
            ((id(3), id(10)), 1),
        ]);
        let plan = allocate(&wanted, &free).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan.iter().map(|a| a.quantity).sum::<i64>(), 7);
        assert_eq!(
            plan[0],
            Allocation {
                warehouse_id: id(1),
                product_id: id(10),
                quantity: 5
            }
        );
        assert!(allocate(&BTreeMap::from([(id(10), 10)]), &free).is_none());
        assert!(allocate(&BTreeMap::from([(id(99), 1)]), &free).is_none());
        assert!(allocate(&BTreeMap::from([(id(10), 0)]), &free).is_none());
    }

    #[test]
    fn negative_free_stock_counts_as_none() {
        let free = BTreeMap::from([((id(1), id(10)), -3), ((id(2), id(10)), 2)]);
        let plan = allocate(&BTreeMap::from([(id(10), 2)]), &free).unwrap();
        assert_eq!(
            plan,
            vec![Allocation {
                warehouse_id: id(2),
                product_id: id(10),
                quantity: 2
            }]
        );
    }
}
