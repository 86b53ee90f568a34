//! The realistic benign corpus: shop traffic built from the value lists in `tests/benign/`
//! (searches, names, addresses, reviews, emails) in the shapes a shop receives them: query
//! strings with tracking parameters, checkout forms, JSON APIs, multipart uploads, cookies.

#![allow(dead_code)]

use super::corpus::Case;

fn lines(name: &str) -> Vec<String> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/benign")
        .join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.replace("\\n", "\n"))
        .collect()
}

/// `application/x-www-form-urlencoded` encoding as browsers do it.
pub fn form_encode(s: &str) -> String {
    let mut o = String::new();
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                o.push(b as char)
            }
            b' ' => o.push('+'),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const UA2: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const TRACKING: &[&str] = &[
    "utm_source=newsletter&utm_medium=email&utm_campaign=black_friday_2026",
    "gclid=Cj0KCQiA1NebBhDDARIsAANiDD3_RJeMv8zScF--mC1jf8fO8PDYJCxD9xdwT7iQ59QIIwL-86ncQtMaAh0lEALw_wcB",
    "fbclid=IwAR1dug0BYxe0ukhZ2vKrdQwLAxVFRJ--Q2Y7OBJE_0uId9-Eh-sJWLdVk2E",
    "utm_source=google&utm_medium=cpc&utm_term=running+shoes&utm_content=ad%7C3",
    "ref=homepage_banner&_ga=2.123456789.987654321.1700000000-1234567890.1700000000",
    "msclkid=5a1b2c3d4e5f67890abcdef123456789&utm_source=bing",
    "mc_cid=a1b2c3d4e5&mc_eid=f6g7h8i9j0",
    "",
];

fn cookies(i: usize) -> String {
    let v = [
        format!("session={JWT}; cart_id=8f14e45f-ceea-467e-a3a4-07c8e1d5b1e2"),
        "_ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; consent=analytics%3Dtrue%2Cads%3Dfalse".into(),
        "sid=s%3AbXlzZWNyZXRzZXNzaW9u.Zm9vYmFyYmF6cXV4; lang=en-GB; currency=EUR".into(),
        "remember_token=SGVsbG9Xb3JsZFRoaXNJc0FCYXNlNjRFbmNvZGVkU3RyaW5n==; theme=dark".into(),
        "recently_viewed=123%2C456%2C789; csrftoken=Zt1QYc0dO4mK2q8hB7xv5wJ3nR6pL9sF".into(),
        "PHPSESSID=9k2j3h4g5f6d7s8a9q0w1e2r3t; wp-settings-1=libraryContent%3Dbrowse%26editor%3Dtinymce".into(),
        // Consent managers, analytics and carts keep structured data in cookies.
        "OptanonConsent=isGpcEnabled=0&datestamp=Mon+Nov+30+2026+02%3A45%3A00+GMT%2B0100+(Central+European+Standard+Time)&version=202310.1.0&browserGpcFlag=0&isIABGlobal=false&hosts=&consentId=0b6c1a2e-7d3f&interactionCount=1&landingPath=NotLandingPage&groups=C0001%3A1%2CC0002%3A0%2CC0004%3A0; OptanonAlertBoxClosed=2026-11-30T01:45:00.000Z".into(),
        "_ga_ABC123XYZ=GS1.1.1764460000.3.1.1764460100.0.0.0; _fbp=fb.1.1764460000000.123456789; _gcl_au=1.1.987654321.1764460000".into(),
        "cart=%7B%22items%22%3A%5B%7B%22id%22%3A1001%2C%22qty%22%3A2%2C%22note%22%3A%22gift%20wrap%22%7D%5D%2C%22currency%22%3A%22EUR%22%7D; ab_test=checkout_v2%3Dvariant_b".into(),
        "CookieConsent={stamp:%27-1%27%2Cnecessary:true%2Cpreferences:true%2Cstatistics:false%2Cmarketing:false%2Cmethod:%27explicit%27%2Cver:1%2Cutc:1764460000000%2Cregion:%27de%27}; user_pref=%7B%22theme%22%3A%22dark%22%2C%22lang%22%3A%22de-DE%22%7D".into(),
        "__stripe_mid=5a1b2c3d-4e5f-6789-abcd-ef0123456789a1b2c3; __cf_bm=Xy7Zq.AbCdEfGhIjKlMnOpQrStUvWxYz-1764460000-1.0.1.1-abcdefghijklmnopqrstuvwxyz0123456789; intercom-id-abc=12345678-90ab-cdef-1234-567890abcdef".into(),
    ];
    v[i % v.len()].clone()
}

fn headers(i: usize, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![
        ("Host".to_string(), "shop.example".to_string()),
        (
            "User-Agent".into(),
            if i.is_multiple_of(2) { UA } else { UA2 }.into(),
        ),
        (
            "Accept".into(),
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8".into(),
        ),
        ("Accept-Language".into(), "en-GB,en;q=0.9,de;q=0.8".into()),
        ("Cookie".into(), cookies(i)),
    ];
    if i.is_multiple_of(2) {
        // What a current Chrome sends besides.
        for (n, v) in [
            ("sec-ch-ua", "\"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\""),
            ("sec-ch-ua-mobile", "?0"),
            ("sec-ch-ua-platform", "\"Windows\""),
            ("sec-ch-ua-full-version-list", "\"Google Chrome\";v=\"131.0.6778.86\", \"Chromium\";v=\"131.0.6778.86\", \"Not_A Brand\";v=\"24.0.0.0\""),
            ("Sec-Fetch-Site", "same-origin"),
            ("Sec-Fetch-Mode", "navigate"),
            ("Upgrade-Insecure-Requests", "1"),
            ("Priority", "u=0, i"),
            ("X-Requested-With", "XMLHttpRequest"),
            ("If-None-Match", "W/\"5e-1a2b3c\""),
        ] {
            h.push((n.to_string(), v.to_string()));
        }
    }
    if i.is_multiple_of(3) {
        h.push((
            "Referer".into(),
            format!(
                "https://www.google.com/search?q={}&{}",
                form_encode("shop example"),
                TRACKING[i % TRACKING.len()]
            ),
        ));
    }
    for (n, v) in extra {
        h.push((n.to_string(), v.to_string()));
    }
    h
}

/// Builds the corpus (a few hundred requests).
pub fn shop_requests() -> Vec<Case> {
    let searches = lines("searches.txt");
    let names = lines("names.txt");
    let addresses = lines("addresses.txt");
    let reviews = lines("reviews.txt");
    let emails = lines("emails.txt");
    let mut out = Vec::new();
    let mut push =
        |kind: &str, method: &str, uri: String, h: Vec<(String, String)>, body: Option<String>| {
            let n = out.len();
            out.push(Case::new(
                "shop",
                0,
                format!("{kind}-{n}"),
                false,
                method,
                &uri,
                h,
                body.map(String::into_bytes),
            ));
        };
    // Searches in the query string, with tracking parameters.
    for (i, q) in searches.iter().enumerate() {
        let t = TRACKING[i % TRACKING.len()];
        let sep = if t.is_empty() { "" } else { "&" };
        push(
            "search",
            "GET",
            format!(
                "/search?q={}&page={}&sort=price_asc{sep}{t}",
                form_encode(q),
                i % 5 + 1
            ),
            headers(i, &[]),
            None,
        );
    }
    // Search suggestions as a JSON API.
    for (i, q) in searches.iter().enumerate().step_by(2) {
        let h = headers(
            i,
            &[
                ("Content-Type", "application/json"),
                ("X-Requested-With", "XMLHttpRequest"),
            ],
        );
        push("suggest", "POST", "/api/v1/search/suggest".into(), h, Some(format!("{{\"query\":{},\"limit\":8,\"filters\":{{\"in_stock\":true,\"price\":{{\"max\":100}}}}}}", json_str(q))));
    }
    // Checkout forms.
    for (i, name) in names.iter().enumerate() {
        let a = &addresses[i % addresses.len()];
        let e = &emails[i % emails.len()];
        let body = format!(
            "name={}&email={}&address={}&city={}&postcode={}&phone={}&note={}&shipping=express&terms=on",
            form_encode(name),
            form_encode(e),
            form_encode(a),
            form_encode("Saint-Étienne"),
            form_encode("SW1A 2AA"),
            form_encode("+44 (0)20 7946 0958"),
            form_encode(if i % 2 == 0 { "Please leave at the door; ring twice" } else { "Gift wrap please - it's for my mum's 60th!" }),
        );
        push(
            "checkout",
            "POST",
            "/checkout".into(),
            headers(i, &[("Content-Type", "application/x-www-form-urlencoded")]),
            Some(body),
        );
    }
    // Reviews as forms and as JSON.
    for (i, r) in reviews.iter().enumerate() {
        let title = &searches[i % searches.len()];
        let body = format!(
            "rating={}&title={}&review={}&author={}",
            i % 5 + 1,
            form_encode(title),
            form_encode(r),
            form_encode(&names[i % names.len()])
        );
        push(
            "review-form",
            "POST",
            format!("/products/{}/reviews", 1000 + i),
            headers(
                i,
                &[(
                    "Content-Type",
                    "application/x-www-form-urlencoded; charset=UTF-8",
                )],
            ),
            Some(body),
        );
        let json = format!(
            "{{\"rating\":{},\"title\":{},\"body\":{},\"author\":{{\"name\":{},\"email\":{}}},\"tags\":[\"verified\",\"size:{}\"]}}",
            i % 5 + 1,
            json_str(title),
            json_str(r),
            json_str(&names[i % names.len()]),
            json_str(&emails[i % emails.len()]),
            ["S", "M", "L", "XL"][i % 4]
        );
        push(
            "review-json",
            "POST",
            format!("/api/v1/products/{}/reviews", 1000 + i),
            headers(
                i,
                &[
                    ("Content-Type", "application/json"),
                    ("Authorization", &format!("Bearer {JWT}")),
                ],
            ),
            Some(json),
        );
    }
    // Product pages and listings with filters.
    let slugs = [
        "mens-running-shoe-air-9",
        "womens-slim-fit-jeans",
        "oak-table-lamp",
        "o-neill-wetsuit-3-2mm",
        "rock-n-roll-t-shirt",
        "usb-c-cable-2m",
        "cafe-au-lait-mug",
        "levis-501-original",
    ];
    for i in 0..40 {
        let s = slugs[i % slugs.len()];
        let uri = match i % 4 {
            0 => format!("/products/{s}?variant={}&colour=navy%20blue", 40000 + i),
            1 => format!("/category/shoes?size%5B%5D=8&size%5B%5D=9&price_min=20&price_max=149.99&brand=nike,adidas&{}", TRACKING[i % TRACKING.len()]),
            2 => format!("/products/{s}/images/{}.webp?w=640&h=480&fit=crop&auto=format,compress", i),
            _ => format!("/cart/add?product_id={}&qty=2&return_to=%2Fproducts%2F{s}%3Fvariant%3D{}", 500 + i, 40000 + i),
        };
        push("page", "GET", uri, headers(i, &[]), None);
    }
    // JSON APIs: cart, address book, login, newsletter, payments.
    for i in 0..30 {
        let (uri, body) = match i % 6 {
            0 => ("/api/v1/cart/items", format!("{{\"product_id\":{},\"variant_id\":{},\"quantity\":{},\"note\":\"Engraving: 'To J. & M.'\"}}", 500 + i, 40000 + i, i % 3 + 1)),
            1 => ("/api/v1/addresses", format!("{{\"name\":{},\"line1\":{},\"country\":\"GB\",\"default\":true}}", json_str(&names[i % names.len()]), json_str(&addresses[i % addresses.len()]))),
            2 => ("/api/v1/login", format!("{{\"email\":{},\"password\":\"P@ssw0rd!#{}-x$%^&*()\",\"remember\":true}}", json_str(&emails[i % emails.len()]), i)),
            3 => ("/api/v1/newsletter", format!("{{\"email\":{},\"source\":\"footer\",\"consent\":{{\"marketing\":true,\"at\":\"2026-11-30T02:{:02}:00Z\"}}}}", json_str(&emails[i % emails.len()]), i)),
            4 => ("/api/v1/payments/intent", format!("{{\"amount\":{},\"currency\":\"EUR\",\"payment_method\":\"pm_1NxYz2AbCdEfGhIj{}\",\"return_url\":\"https://shop.example/checkout/complete?order=ORD-{}\",\"metadata\":{{\"coupon\":\"SAVE-20%\"}}}}", 4999 + i, i, 7000 + i)),
            _ => ("/api/v1/events", format!("{{\"event\":\"add_to_cart\",\"page\":\"/products/oak-table-lamp?ref=home\",\"ts\":{},\"props\":{{\"price\":\"€49.99\",\"label\":\"Lamp (2 pack) - oak & brass\"}}}}", 1764460000 + i)),
        };
        // API clients sign and key their requests.
        let key = format!("7f3c2a1e-4b5d-4c8e-9a0f-{:012}", i);
        let extra = [
            ("Content-Type", "application/json; charset=utf-8"),
            ("X-Api-Version", "2026-11-01"),
            ("Idempotency-Key", key.as_str()),
            ("Signature-Input", "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created=1764460000;keyid=\"shop-key-1\";alg=\"ed25519\""),
            ("Signature", "sig1=:K2qGT5srn2OGbOIDzQ6kYT+ruaycnDAAUpKv+ePFfD0=:"),
            ("Content-Digest", "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
            ("Stripe-Signature", "t=1764460000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"),
            ("X-Amz-Date", "20261130T024500Z"),
        ];
        push("api", "POST", uri.into(), headers(i, &extra), Some(body));
    }
    // Uploads: images and documents with descriptions (file contents are binary-ish).
    let files = [
        "IMG_2024-05-01 (1).jpg",
        "photo of shoes.png",
        "receipt #42.pdf",
        "O'Brien invoice.pdf",
        "scan 3/4.jpeg",
        "my-review_pic.HEIC",
        "Screenshot 2026-11-29 at 10.15.32.png",
        "résumé.pdf",
    ];
    for i in 0..24 {
        let f = files[i % files.len()];
        let desc = &reviews[i % reviews.len()];
        let body = format!(
            "------WebKitFormBoundary7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n{desc}\r\n------WebKitFormBoundary7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"{f}\"\r\nContent-Type: image/jpeg\r\n\r\n\u{ff}\u{d8}\u{ff}\u{e0}JFIF <script> ; cat /etc/passwd ' or 1=1 -- binary\r\n------WebKitFormBoundary7MA4YWxkTrZu0gW--\r\n"
        );
        push(
            "upload",
            "POST",
            "/account/uploads".into(),
            headers(
                i,
                &[(
                    "Content-Type",
                    "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
                )],
            ),
            Some(body),
        );
    }
    // Tricky but ordinary text: emoticons, inch marks, SQL and shell words in prose, Windows
    // paths, prices with `<` and `>`: in a search, a review form and a JSON comment each.
    for (i, t) in lines("tricky.txt").iter().enumerate() {
        push(
            "tricky-search",
            "GET",
            format!("/search?q={}", form_encode(t)),
            headers(i, &[]),
            None,
        );
        push(
            "tricky-form",
            "POST",
            "/contact".into(),
            headers(i, &[("Content-Type", "application/x-www-form-urlencoded")]),
            Some(format!(
                "subject=Question&message={}&order={}",
                form_encode(t),
                10000 + i
            )),
        );
        push(
            "tricky-json",
            "POST",
            "/api/v1/comments".into(),
            headers(i, &[("Content-Type", "application/json")]),
            Some(format!(
                "{{\"comment\":{},\"product\":{}}}",
                json_str(t),
                500 + i
            )),
        );
    }
    // Links and redirects carrying URLs, emails, base64 and tokens in parameters.
    for i in 0..20 {
        let uri = match i % 5 {
            0 => format!(
                "/login?next={}",
                form_encode("/account/orders?page=2&sort=-date")
            ),
            1 => format!(
                "/r?url={}&sig=dGhpcyBpcyBhIHNpZ25hdHVyZQ%3D%3D",
                form_encode("https://partner.example/landing?x=1&y=two")
            ),
            2 => format!(
                "/reset-password?token={JWT}&email={}",
                form_encode(&emails[i % emails.len()])
            ),
            3 => format!(
                "/unsubscribe?e={}&list=weekly%20deals",
                form_encode("c2Vhbi5vYnJpZW5AZXhhbXBsZS5jb20=")
            ),
            _ => format!(
                "/share?text={}&via=shop",
                form_encode("Check this out: https://shop.example/p/123 - only £19.99!")
            ),
        };
        push("link", "GET", uri, headers(i, &[]), None);
    }
    out
}
