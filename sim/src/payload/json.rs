//! Realistic JSON events: a bank's `account-N` streams (a customer registering, deposits,
//! withdrawals, card payments, transfers, address changes) and a shop's `order-N` streams
//! (an order placed, items added, payment captured, shipped). Each event type has its own
//! range of sizes; optional fields and a free-text note fill an event up to the size drawn.

use rand::rngs::StdRng;
use rand::Rng;

use super::values::*;
use super::words::*;
use super::{Context, Event};

type Build = fn(&mut StdRng, &Context<'_>, usize) -> String;

/// One event type: its name, the sizes it is drawn in, and its builder.
struct Kind {
    name: &'static str,
    sizes: (usize, usize),
    build: Build,
}

const CUSTOMER_REGISTERED: Kind = Kind {
    name: "CustomerRegistered",
    sizes: (350, 700),
    build: customer_registered,
};
const ORDER_PLACED: Kind = Kind {
    name: "OrderPlaced",
    sizes: (420, 1500),
    build: order_placed,
};

/// The later events of an account stream, with their weights.
const ACCOUNT: &[(u32, Kind)] = &[
    (30, def("FundsDeposited", 220, 450, funds_moved)),
    (22, def("FundsWithdrawn", 200, 420, funds_moved)),
    (15, def("CardPaymentAuthorized", 300, 560, card_payment)),
    (25, def("TransferSent", 320, 650, transfer_sent)),
    (8, def("AddressChanged", 300, 600, address_changed)),
];

/// The later events of an order stream, with their weights.
const ORDER: &[(u32, Kind)] = &[
    (40, def("ItemAdded", 230, 430, item_added)),
    (25, def("PaymentCaptured", 300, 560, payment_captured)),
    (20, def("OrderShipped", 380, 900, order_shipped)),
    (5, def("AddressChanged", 300, 600, address_changed)),
    (10, ORDER_PLACED),
];

const fn def(name: &'static str, lo: usize, hi: usize, build: Build) -> Kind {
    Kind {
        name,
        sizes: (lo, hi),
        build,
    }
}

/// The event type for the next event of `ctx.stream`, and the size to build it in: a stream
/// starts with a registration or an order.
pub(super) fn kind_of(rng: &mut StdRng, ctx: &Context<'_>) -> (&'static str, usize, Build) {
    let order = ctx.stream.starts_with("order-");
    let k = match (order, ctx.number) {
        (false, 0) => &CUSTOMER_REGISTERED,
        (true, 0) => &ORDER_PLACED,
        (false, _) => weighted(rng, ACCOUNT),
        (true, _) => weighted(rng, ORDER),
    };
    (k.name, rng.gen_range(k.sizes.0..=k.sizes.1), k.build)
}

/// The type the next event would have and the size drawn for it.
pub(super) fn kind(rng: &mut StdRng, ctx: &Context<'_>) -> (&'static str, usize) {
    let (name, size, _) = kind_of(rng, ctx);
    (name, size)
}

fn weighted<'a>(rng: &mut StdRng, kinds: &'a [(u32, Kind)]) -> &'a Kind {
    let total: u32 = kinds.iter().map(|(w, _)| w).sum();
    let mut at = rng.gen_range(0..total);
    for (w, k) in kinds {
        if at < *w {
            return k;
        }
        at -= w;
    }
    unreachable!("a draw below the total weight")
}

/// A JSON event for `ctx`, within its budget.
pub(super) fn event(rng: &mut StdRng, ctx: &Context<'_>) -> Event {
    let (event_type, size, build) = kind_of(rng, ctx);
    let user = entity("user", &rng.gen_range(0..5000).to_string());
    let metadata = Obj::new()
        .str("$correlationId", &ctx.correlation.to_string())
        .str("$causationId", &ctx.causation.to_string())
        .raw("userId", &user)
        .str("source", pick(rng, SOURCES))
        .end();
    let room = ctx.budget.saturating_sub(metadata.len());
    let data = if room >= 150 {
        build(rng, ctx, size.min(room))
    } else {
        String::new()
    };
    let (data, metadata) = if data.is_empty() || data.len() > room {
        // Too little room for a whole event: a compact one (small test chunks).
        let compact = Obj::new()
            .raw("amount", &money(rng, 1, 500))
            .raw("currency", &currency(rng))
            .end();
        (compact, r#"{"source":"web"}"#.to_string())
    } else {
        (data, metadata)
    };
    Event {
        event_type,
        data: data.into_bytes(),
        metadata: metadata.into_bytes(),
        is_json: true,
    }
}

/// The account or order id of the stream, the same in all of its events.
fn stream_id(ctx: &Context<'_>) -> String {
    entity("stream", ctx.stream)
}

fn customer_registered(rng: &mut StdRng, ctx: &Context<'_>, target: usize) -> String {
    let (first, last, email) = person(rng);
    let (home, _) = address(rng);
    let obj = Obj::new()
        .raw("customerId", &stream_id(ctx))
        .str("firstName", first)
        .str("lastName", last)
        .str("email", &email)
        .raw("registeredAt", &time(rng, ctx.ticks, 2_000));
    let tags: Vec<String> = (0..rng.gen_range(1..4))
        .map(|_| quote(pick(rng, TAGS)))
        .collect();
    let preferences = Obj::new()
        .str("language", pick(rng, LANGUAGES))
        .raw(
            "marketingOptIn",
            if rng.gen_bool(0.4) { "true" } else { "false" },
        )
        .raw("channels", &array(&[quote("email"), quote("push")]))
        .end();
    let optional = vec![
        ("phone", phone(rng)),
        (
            "dateOfBirth",
            date(ctx.ticks, -rng.gen_range(6_600..29_000)),
        ),
        ("address", home),
        ("preferences", preferences),
        ("tags", array(&tags)),
    ];
    obj.fill(rng, optional, target)
}

fn funds_moved(rng: &mut StdRng, ctx: &Context<'_>, target: usize) -> String {
    let obj = Obj::new()
        .raw("accountId", &stream_id(ctx))
        .raw("transactionId", &uuid(rng))
        .raw("amount", &money(rng, 5, 2_500))
        .raw("currency", &currency(rng))
        .raw("bookedAt", &time(rng, ctx.ticks, 500));
    let (first, last, _) = person(rng);
    let country = pick(rng, &["DE", "FR", "NL", "ES", "IT", "BE"]);
    let counterparty = Obj::new()
        .str("name", &format!("{first} {last}"))
        .raw("iban", &iban(rng, country))
        .end();
    let optional = vec![
        ("channel", quote(pick(rng, DEPOSIT_CHANNELS))),
        (
            "reference",
            quote(&format!(
                "INV-{}-{}",
                rng.gen_range(2019..2025),
                digits(rng, 6)
            )),
        ),
        ("balanceAfter", money(rng, 0, 40_000)),
        ("counterparty", counterparty),
    ];
    obj.fill(rng, optional, target)
}

fn card_payment(rng: &mut StdRng, ctx: &Context<'_>, target: usize) -> String {
    let (city, country, _) = CITIES[rng.gen_range(0..CITIES.len())];
    let merchant = Obj::new()
        .str(
            "name",
            &format!("{} {}", pick(rng, LAST_NAMES), pick(rng, PRODUCT_NOUNS)),
        )
        .str("mcc", &digits(rng, 4))
        .str("city", city)
        .str("country", country)
        .end();
    let obj = Obj::new()
        .raw("accountId", &stream_id(ctx))
        .raw("authorizationId", &uuid(rng))
        .raw("amount", &money(rng, 1, 600))
        .raw("currency", &currency(rng))
        .raw("merchant", &merchant)
        .raw("authorizedAt", &time(rng, ctx.ticks, 800));
    let optional = vec![
        (
            "card",
            Obj::new()
                .str("brand", pick(rng, CARD_BRANDS))
                .str("last4", &digits(rng, 4))
                .end(),
        ),
        (
            "contactless",
            quote(if rng.gen_bool(0.6) { "yes" } else { "no" }),
        ),
        ("authCode", quote(&alphanumeric(rng, 6).to_uppercase())),
    ];
    obj.fill(rng, optional, target)
}

fn transfer_sent(rng: &mut StdRng, ctx: &Context<'_>, target: usize) -> String {
    let (first, last, _) = person(rng);
    let country = pick(
        rng,
        &["DE", "FR", "NL", "ES", "IT", "BE", "AT", "PT", "IE", "FI"],
    );
    let counterparty = Obj::new()
        .str("name", &format!("{first} {last}"))
        .raw("iban", &iban(rng, country))
        .str(
            "bic",
            &format!(
                "{}{country}{}",
                letters(rng, 4),
                alphanumeric(rng, 2).to_uppercase()
            ),
        )
        .end();
    let obj = Obj::new()
        .raw("accountId", &stream_id(ctx))
        .raw("transferId", &uuid(rng))
        .raw("amount", &money(rng, 10, 9_000))
        .raw("currency", &currency(rng))
        .raw("counterparty", &counterparty)
        .raw("executedAt", &time(rng, ctx.ticks, 1_000));
    let fees = Obj::new()
        .raw("amount", &money(rng, 0, 5))
        .raw("currency", &currency(rng))
        .end();
    let optional = vec![
        ("purposeCode", quote(pick(rng, TRANSFER_PURPOSES))),
        ("scheduledFor", date(ctx.ticks, rng.gen_range(0..10))),
        ("fees", fees),
        (
            "instant",
            if rng.gen_bool(0.3) { "true" } else { "false" }.to_string(),
        ),
    ];
    obj.fill(rng, optional, target)
}

fn address_changed(rng: &mut StdRng, ctx: &Context<'_>, target: usize) -> String {
    let (new, _) = address(rng);
    let (old, _) = address(rng);
    let obj = Obj::new()
        .raw("customerId", &stream_id(ctx))
        .raw("newAddress", &new)
        .raw("changedAt", &time(rng, ctx.ticks, 3_000));
    let optional = vec![
        ("previousAddress", old),
        ("reason", quote(pick(rng, ADDRESS_REASONS))),
        (
            "verified",
            if rng.gen_bool(0.7) { "true" } else { "false" }.to_string(),
        ),
    ];
    obj.fill(rng, optional, target)
}

/// An order line: line id, SKU, name, quantity and unit price.
fn line(rng: &mut StdRng) -> (String, u64) {
    let (sku, name, price) = product(rng);
    let quantity = if rng.gen_bool(0.7) {
        1
    } else {
        rng.gen_range(2..6)
    };
    let cents: u64 = price.replace('.', "").parse().expect("a price in cents");
    let obj = Obj::new()
        .raw("lineId", &uuid(rng))
        .raw("sku", &sku)
        .raw("name", &name)
        .raw("quantity", &quantity.to_string())
        .raw("unitPrice", &price)
        .end();
    (obj, cents * quantity)
}

fn order_placed(rng: &mut StdRng, ctx: &Context<'_>, target: usize) -> String {
    let lines_wanted = (target.saturating_sub(380) / 150).clamp(1, 10);
    let (lines, subtotal): (Vec<String>, Vec<u64>) = (0..lines_wanted).map(|_| line(rng)).unzip();
    let subtotal: u64 = subtotal.iter().sum();
    let shipping = [0, 495, 695, 995][rng.gen_range(0..4)];
    let tax = subtotal * 19 / 119;
    let totals = Obj::new()
        .raw("subtotal", &cents(subtotal))
        .raw("shipping", &cents(shipping))
        .raw("tax", &cents(tax))
        .raw("total", &cents(subtotal + shipping))
        .end();
    let obj = Obj::new()
        .raw("orderId", &stream_id(ctx))
        .raw(
            "customerId",
            &entity("customer", &rng.gen_range(0..20_000).to_string()),
        )
        .raw("placedAt", &time(rng, ctx.ticks, 1_500))
        .raw("currency", &currency(rng))
        .raw("lines", &array(&lines))
        .raw("totals", &totals);
    let (ship_to, _) = address(rng);
    let optional = vec![
        ("shippingAddress", ship_to),
        ("channel", quote(pick(rng, SOURCES))),
        ("couponCode", quote(&letters(rng, 8))),
    ];
    obj.fill(rng, optional, target)
}

fn item_added(rng: &mut StdRng, ctx: &Context<'_>, target: usize) -> String {
    let (sku, name, price) = product(rng);
    let obj = Obj::new()
        .raw("orderId", &stream_id(ctx))
        .raw("lineId", &uuid(rng))
        .raw("sku", &sku)
        .raw("name", &name)
        .raw("quantity", &rng.gen_range(1..4).to_string())
        .raw("unitPrice", &price)
        .raw("currency", &currency(rng))
        .raw("addedAt", &time(rng, ctx.ticks, 1_000));
    let variant = Obj::new()
        .str("size", pick(rng, SIZES))
        .str("colour", pick(rng, COLOURS))
        .end();
    let optional = vec![("variant", variant), ("giftWrap", "false".to_string())];
    obj.fill(rng, optional, target)
}

fn payment_captured(rng: &mut StdRng, ctx: &Context<'_>, target: usize) -> String {
    let provider = pick(rng, PAYMENT_PROVIDERS);
    let obj = Obj::new()
        .raw("orderId", &stream_id(ctx))
        .raw("paymentId", &uuid(rng))
        .raw("amount", &money(rng, 5, 1_800))
        .raw("currency", &currency(rng))
        .str(
            "method",
            pick(
                rng,
                &["card", "card", "paypal", "ideal", "sofort", "klarna"],
            ),
        )
        .raw("capturedAt", &time(rng, ctx.ticks, 1_000));
    let card = Obj::new()
        .str("brand", pick(rng, CARD_BRANDS))
        .str("last4", &digits(rng, 4))
        .str(
            "expiry",
            &format!("{:02}/{}", rng.gen_range(1..13), rng.gen_range(25..31)),
        )
        .end();
    let optional = vec![
        ("provider", quote(provider)),
        (
            "providerReference",
            quote(&format!("{}_{}", &provider[..2], alphanumeric(rng, 24))),
        ),
        ("card", card),
        (
            "threeDSecure",
            if rng.gen_bool(0.8) { "true" } else { "false" }.to_string(),
        ),
    ];
    obj.fill(rng, optional, target)
}

fn order_shipped(rng: &mut StdRng, ctx: &Context<'_>, target: usize) -> String {
    let items: Vec<String> = (0..rng.gen_range(1..6))
        .map(|_| {
            let (sku, _, _) = product(rng);
            Obj::new()
                .raw("sku", &sku)
                .raw("quantity", &rng.gen_range(1..3).to_string())
                .end()
        })
        .collect();
    let obj = Obj::new()
        .raw("orderId", &stream_id(ctx))
        .raw("shipmentId", &uuid(rng))
        .str("carrier", pick(rng, CARRIERS))
        .str(
            "trackingNumber",
            &format!("{}{}", letters(rng, 2), digits(rng, 12)),
        )
        .raw("shippedAt", &time(rng, ctx.ticks, 5_000));
    let (to, _) = address(rng);
    let optional = vec![
        ("items", array(&items)),
        ("address", to),
        ("estimatedDelivery", date(ctx.ticks, rng.gen_range(1..6))),
        (
            "weightKg",
            format!("{}.{}", rng.gen_range(0..25), rng.gen_range(0..10)),
        ),
    ];
    obj.fill(rng, optional, target)
}
