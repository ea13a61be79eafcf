/* Swapline snippet: the visitor's texts and tracking number, in the page that embeds it.
 *   <script async src="https://HOST/s.js" data-site="SITE"></script>
 * Plain ES2017, no dependencies. Whatever fails, the page stays as it was. */
(() => {
  const doc = document, me = doc.currentScript;
  if (!me || window.swapline) return;
  const site = me.dataset.site, base = new URL(me.src).origin, NOSWAP = "[data-swapline-noswap]", TEL = 'a[href^="tel:"]';
  const rid = () => crypto.getRandomValues(new Uint32Array(4)).join(""); // 128 bits, 16 to 40 digits
  // A sandboxed frame throws on localStorage and document.cookie: the swaps go on without them.
  const get = (key) => { try { return localStorage[key]; } catch (e) {} };
  const cookie = (value) => { try { return value ? (doc.cookie = value) : doc.cookie; } catch (e) { return ""; } };
  // With data-consent="required", nothing that identifies the visitor is kept or sent until the
  // page calls swapline.consent(true): no cookie, no localStorage, no number, no beacon. Texts
  // still swap (every experiment shows its control).
  let consented = me.dataset.consent != "required" || get("swl_consent");
  const put = (key, value) => { try { if (consented) localStorage[key] = value; } catch (e) {} };

  // The visitor id lives in a first-party cookie and in localStorage: either restores the other.
  let vid = (consented && ((cookie().match(/(^|; )swl_vid=([\w-]+)/) || [])[2] || get("swl_vid"))) || rid();
  const keep = (id) => {
    put("swl_vid", vid = id);
    if (consented) cookie(`swl_vid=${id};path=/;max-age=31536000;samesite=lax`);
  };
  keep(vid);

  // Hide only what the page says is about to change (data-hide), and only while we wait.
  const wait = +me.dataset.timeout || 1000, hidden = doc.createElement("style");
  if (me.dataset.hide) doc.documentElement.appendChild(hidden).textContent = me.dataset.hide + "{visibility:hidden!important}";

  // `done` settles `decided` with the decision, or null when the service failed.
  let decision, pattern, digits, done;
  const decided = new Promise((resolve) => (done = resolve)).then((value) => {
    hidden.remove();
    return (decision = value);
  });

  // Put the new number's digits in place of the old one's wherever those stand with only
  // separators between them: each place keeps its format, even split over child elements.
  // `owners` says which text node each character is in: a digit in another node before the
  // number ("д. 28<br>+7 812…") does not make it part of a longer run of digits.
  const renumber = (chars, write, owners = []) => {
    const text = chars.join("");
    // Run to the end: exec's final null sets lastIndex back to 0 for the next text.
    for (let match; (match = pattern.exec(text));) {
      const at = match.index, end = at + match[0].length;
      // A digit right after it, or right before it in the same node: a longer number's digits.
      if (/\d/.test(text[end]) || (/\d/.test(text[at - 1]) && owners[at - 1] == owners[at])) continue;
      // The country code or trunk prefix (+7, 8) stays; the national digits change.
      for (let i = end, n = digits.length; n && i > at;) if (/\d/.test(text[--i])) write(i, digits[--n]);
    }
  };
  const swapNumber = (root) => {
    const walker = doc.createTreeWalker(root, 4), owners = [], chars = [];
    for (let node, block, last; (node = walker.nextNode());)
      if (!node.parentElement.closest(`script,style,textarea,option,[contenteditable],${NOSWAP}`)) {
        // Text of another block never continues a number: a boundary no node owns.
        if ((block = node.parentElement.closest("p,div,li,td,th,dt,dd,h1,h2,h3")) != last) owners.push(0) && chars.push("|");
        last = block;
        for (const char of node.data.split("")) owners.push(node) && chars.push(char); // UTF-16 units, as indexed
      }
    const changed = new Set();
    renumber(chars, (at, digit) => changed.add(owners[at]) && (chars[at] = digit), owners);
    changed.forEach((node) => (node.data = chars.filter((c, i) => owners[i] == node).join("")));
    // tel: links, percent-encoded ones too (unescape never throws), and their labels that read
    // the number out to screen readers.
    for (const link of root.querySelectorAll(TEL))
      if (!link.closest(NOSWAP))
        for (const name of ["href", "aria-label", "title"]) {
          const value = link.getAttribute(name), chars = (name == "href" ? unescape(value) : value || "").split("");
          renumber(chars, (at, digit) => (chars[at] = digit));
          if (value) link.setAttribute(name, chars.join(""));
        }
  };
  const apply = (root) => {
    if (!decision || !root || root.nodeType != 1) return;
    for (const { selector, text } of decision.swaps)
      try {
        for (const el of [root, ...root.querySelectorAll(selector)])
          if (el.matches(selector) && !el.closest(NOSWAP) && el.textContent != text) el.textContent = text;
      } catch (e) {}
    if (pattern) swapNumber(root);
  };

  // A conversion waits in the outbox (localStorage, the newest 20) from before it is sent until
  // the service answers 2xx, or a 4xx that says it never will take it. Unanswered (the page was
  // left), 5xx or 429, it is sent again, with its own id and token, when the next page's
  // decision arrives: the service counts an event id once. The body is text/plain: no pre-flight.
  const outbox = () => { try { return [...JSON.parse(get("swl_out"))]; } catch (e) { return []; } }; // a list, whatever is stored
  const post = (event) =>
    fetch(base + "/v1/events", { method: "POST", body: JSON.stringify(event), keepalive: 1 })
      .then((r) => event.id && r.status < 500 && r.status != 429 &&
        put("swl_out", JSON.stringify(outbox().filter((e) => e.id != event.id))))
      .catch(() => {});
  // Only once the decision is in: `on` listens from then on, `goal` waits for it.
  const send = (event) => {
    if (!consented) return;
    event.token = decision.token;
    if (event.id) put("swl_out", JSON.stringify([...outbox(), event].slice(-20)));
    post(event);
  };
  const on = (type, kind, pick) => addEventListener(type, (e) => pick(e.target) && send({ type: kind, id: rid() }), true);

  window.swapline = {
    ready: (cb) => decided.then(cb),
    swap: (node) => apply(node || doc.body),
    goal: (name) => decided.then((d) => d && send({ type: "goal", id: rid(), name })),
    consent: (yes) => {
      if ((consented = yes)) {
        put("swl_consent", 1);
        keep(vid);
        ask(doc.referrer).catch(() => {}); // now the visit, its number and the page view count
      } else {
        for (const key of ["swl_vid", "swl_visit", "swl_out", "swl_consent"]) try { localStorage.removeItem(key); } catch (e) {}
        cookie("swl_vid=;path=/;max-age=0");
      }
    },
  };

  // A page view: the page's own, then each route a single-page app goes to (pushState,
  // popstate), which the service takes as the next page of the same visit. The visit goes on
  // from page to page: the last decision's token comes back with the next page view.
  const preview = new URLSearchParams(location.search).get("swapline_preview");
  let here = location.href, started, beating;
  const ask = (ref) => {
    const query = new URLSearchParams({ site, url: here, ref, vid, visit: get("swl_visit") || "" });
    if (preview) query.set("preview", preview);
    if (!consented) query.set("consent", 0);
    const abort = new AbortController();
    setTimeout(() => abort.abort(), wait);
    return fetch(base + "/v1/decide?" + query, { signal: abort.signal })
      .then((r) => (r.ok ? r.json() : Promise.reject()))
      .then((answer) => {
        const phone = answer.phone || {};
        keep(answer.vid);
        put("swl_visit", answer.token); // it carries the visit
        // The page's number as people print it, where the visitor's differs.
        pattern = phone.replaces_pattern && RegExp(phone.replaces_pattern, "gu");
        digits = phone.digits;
        const start = () => {
          decision = answer;
          apply(doc.body);
          if (!started) {
            started = 1;
            outbox().forEach(post);
            // What changed, once a batch: an added element, the element of an added or edited
            // text. Not the parent of every record: appending to a long list would read the
            // whole list again for each item.
            new MutationObserver((records) => {
              const roots = new Set();
              for (const r of records)
                for (const node of r.type == "childList" ? r.addedNodes : [r.target])
                  roots.add(node.nodeType == 1 ? node : node.parentElement);
              roots.forEach(apply);
            }).observe(doc.body, { childList: 1, subtree: 1, characterData: 1 });
            on("submit", "form", (el) => !el.closest(NOSWAP));
            on("click", "tel_click", (el) => el.closest && el.closest(TEL));
          }
          if (phone.heartbeat && !beating) beating = setInterval(() => !doc.hidden && send({ type: "heartbeat" }), phone.heartbeat);
          done(answer);
        };
        doc.body ? start() : addEventListener("DOMContentLoaded", start);
      });
  };
  // A tab opened in the background asks for nothing, a number least of all, until it is seen.
  const first = () => ask(doc.referrer).catch(() => done(null));
  doc.hidden ? addEventListener("visibilitychange", first, { once: 1 }) : first();
  const route = () => {
    if (location.href == here) return;
    const from = here;
    here = location.href;
    ask(from).catch(() => {});
  };
  const push = history.pushState;
  history.pushState = (...args) => {
    push.apply(history, args);
    route();
  };
  addEventListener("popstate", route);
})();
