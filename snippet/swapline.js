/* Swapline snippet: the visitor's texts and tracking number, in the page that embeds it.
 *   <script async src="https://HOST/s.js" data-site="SITE"></script>
 * Plain ES2017, no dependencies. Whatever fails, the page stays as it was. */
(() => {
  const doc = document, me = doc.currentScript;
  // `api`: the service's, where this script came from. data-site and data-timeout are read where
  // they are used.
  const data = me.dataset, api = new URL("/v1/", me.src), name = data.name || "swapline";
  // A page that loads this script twice (two tags, a tag manager's copy, under any data-name) runs
  // it once: a second copy would count every form and call twice. The mark is the document's: an
  // element with the id "swapline" is window.swapline too.
  if (doc.swl) return;
  doc.swl = 1;
  const NOSWAP = "[data-swapline-noswap]"; // tel: links ('a[href^="tel:"]') are spelt out where matched
  // Never rewritten, nor anything inside: what a form submits or a person types included, and
  // the title, which bookmarks and history keep for a later call.
  const SKIP = `script,style,title,textarea,option,[contenteditable],${NOSWAP}`;
  const rid = () => crypto.getRandomValues(new Uint32Array(4)).join(""); // 128 bits, 16 to 40 digits
  // `fn`'s value, or undefined if it throws: a sandboxed frame throws on localStorage and
  // document.cookie, a bad selector in the rules on matches(); nothing of that stops the swaps.
  const safe = (fn) => { try { return fn(); } catch (e) {} };
  const get = (key) => safe(() => localStorage[key]);
  // With data-consent="required", nothing that identifies the visitor is kept or sent until the
  // page calls swapline.consent(true): no cookie, no localStorage, no number, no beacon. Texts
  // still swap (every experiment shows its control).
  let consented = data.consent != "required" || get("swl_consent");
  const put = (key, value) => safe(() => consented && (localStorage[key] = value));

  // The visitor id lives in a first-party cookie and in localStorage: either restores the other.
  // Only this script reads the cookie (no server does), so it needs no SameSite of its own. Kept
  // 347 days (3e7 s: under a year). Secure on a page behind TLS; a plain-HTTP page, which can
  // keep no Secure cookie, writes `;false` instead, an attribute browsers ignore (RFC 6265, 5.2).
  // Without consent the cookie is deleted (max-age=0), a refusal's included.
  let vid = (consented && (safe(() => doc.cookie.match(/\bswl_vid=([\w-]+)/)[1]) || get("swl_vid"))) || rid();
  const keep = (id) => {
    put("swl_vid", vid = id);
    safe(() => (doc.cookie = `swl_vid=${id};path=/;max-age=${consented ? 3e7 : 0};${isSecureContext && "secure"}`));
  };
  keep(vid);

  // Hide only what the page says is about to change (data-hide), and only while we wait, with a
  // constructed stylesheet: a strict CSP (style-src 'self') refuses a <style>, not that. The
  // anti-flicker lines in <head> (README) may have begun, and left their sheet on our tag (a
  // sheet has replaceSync, the plain object none). A browser without constructed stylesheets
  // hides nothing: `hiding` stays a plain object; nor does one whose adopted list is still
  // read-only (Chrome before 99): push throws, safe() takes it.
  let hiding = me.swaplineHiding || {};
  if (data.hide && !hiding.replaceSync)
    safe(() => {
      doc.adoptedStyleSheets.push((hiding = new CSSStyleSheet()));
      hiding.replaceSync(data.hide + "{visibility:hidden!important}");
    });

  // `done` settles `decided` with the decision, or null when the service failed (what data-hide
  // hid shows first). `written`: what each swap found and what it wrote, the latest first, to put
  // back when a single-page app's route no longer sets it.
  let decision, pattern, digits, done, writes, written = [];
  const decided = new Promise((resolve) => (done = resolve));

  // `text` with the new number's digits in place of the old one's wherever those stand with
  // only separators between them: each place keeps its format, even split over elements.
  // `pattern` finds them after a character that is no digit (or at the start): a digit right
  // before would make them part of a longer run.
  const renumber = (text) => {
    const chars = text.split(""); // UTF-16 units, as indexed
    // Run to the end: exec's final null sets lastIndex back to 0 for the next text.
    // A match ends at lastIndex, before no digit (the pattern looks ahead): no longer number's.
    for (let match; (match = pattern.exec(text));) {
      // The country code or trunk prefix (+7, 8) stays; the national digits change.
      for (let i = pattern.lastIndex, n = digits.length; n && i > match.index;)
        if (/\d/.test(text[--i])) chars[i] = digits[--n];
    }
    return chars.join("");
  };
  // How often the snippet rewrote each element (or shadow root) on this route: a page that
  // writes its own text back has it back after eight rounds, instead of fighting the snippet for
  // ever. An element's texts count one each: eight lines between <br>s with the number in each
  // are all rewritten. Each page view starts afresh (`writes`, new with each): a route is new
  // content, even where the app writes the same number again on each.
  const mayWrite = (node) => writes.set(node, -~writes.get(node)).get(node) < 9; // -~: undefined counts as 0
  // One walk over `root` (an element or a shadow root) and all it holds but what is never
  // rewritten (scripts, form controls, editable text, data-swapline-noswap): the swaps'
  // elements, tel: links, open shadow roots, and the text, for the number.
  const apply = (root) => {
    if (!decision || !root || safe(() => root.closest(SKIP))) return;
    const walker = doc.createTreeWalker(root, 5, (node) => (node.matches && node.matches(SKIP) ? 2 : 1));
    const starts = new Map();
    let text = "";
    for (let node = root, parent, block; node; node = walker.nextNode())
      if (node.matches) {
        // A swap sets one DOM property: textContent (never HTML), src, srcset, href or hidden.
        for (const { selector, property, value } of decision.swaps)
          if (safe(() => node.matches(selector)) && node[property] != value && mayWrite(node)) {
            // A text goes into the element's own text node: its only child, or its only child's,
            // and so on ([target]: the first of one), where there is text (an icon alone has
            // none). React and Vue keep that node for <h1>{title}</h1> and write their next text
            // into it, which textContent on the element would take out of the page. An element
            // with several children, or no text, gets textContent: all it holds replaced.
            let target = node;
            if (property == "textContent" && node[property])
              while (target.childNodes.length == 1) [target] = target.childNodes;
            // What it found, and what it wrote as the node reads it back (a relative src
            // reads back absolute).
            written.unshift([target, property, target[property], ((target[property] = value), target[property])]);
          }
        if (node.shadowRoot) watch(node.shadowRoot);
        // tel: links, percent-encoded ones too (unescape never throws; a label rarely holds a
        // %XX, and reads as the visitor sees it), and their labels that read the number out.
        if (pattern && node.matches('a[href^="tel:"]'))
          for (const name of ["href", "aria-label", "title"]) {
            if (node.getAttribute(name)) node.setAttribute(name, renumber(unescape(node.getAttribute(name))));
          }
      } else if (node.data) { // a text (a shadow root has no data)
        // Text of another block never continues a number: a boundary no node owns. Text right
        // under a shadow root has that root for its block. `block`: the last text's, compared
        // with this one's as it takes it.
        parent = node.parentNode;
        if (block != (block = parent.closest ? parent.closest("p,div,li,td,th,dt,dd,h1,h2,h3") : parent)) text += "|";
        starts.set(text.length, node);
        text += node.data;
      }
    if (pattern) {
      const renewed = renumber(text);
      starts.forEach((node, at) => {
        const now = renewed.slice(at, at + node.data.length);
        if (now != node.data && mayWrite(node.parentNode)) node.data = now;
      });
    }
  };

  // What changed, once a batch: an added element, the parent of an added or edited text. Not
  // the parent of every record: appending to a long list would read the whole list again for
  // each item. What the snippet itself wrote meanwhile needs no second look.
  const observer = new MutationObserver((records) => {
    const roots = new Set();
    for (const r of records)
      for (const node of r.type == "childList" ? r.addedNodes : [r.target]) roots.add(node.matches ? node : node.parentNode);
    roots.forEach(apply);
    observer.takeRecords();
  });
  // The whole document, not its <body>: a page that replaces it (Turbo, pjax) is still watched.
  // Its forms and taps are heard there, and an open shadow root's in the root itself: a submit
  // event never leaves it, and a click leaves it as its host's.
  const watch = (root) => {
    apply(root);
    observer.observe(root, { childList: 1, subtree: 1, characterData: 1 });
    root.addEventListener("submit", sent, 1);
    root.addEventListener("click", tapped, 1);
  };
  // `object[name]` made to call `after(object, what it returned)` too, and return that.
  const patch = (object, name, after, original = object[name]) =>
    (object[name] = function (...args) {
      const result = original.apply(this, args);
      after(this, result);
      return result;
    });
  // Open shadow roots attached from now on are watched too (one attached before is found by
  // the first walk; a closed one is its component's own business).
  patch(Element.prototype, "attachShadow", (element, shadow) => element.shadowRoot && watch(shadow));

  // A conversion waits in the outbox (localStorage, the newest 20) from the moment it happens
  // until the service answers below 429: 2xx, or a 4xx that says it never will take it. One that
  // happened before the decision, or was left unanswered (the page was left), 429 or above (5xx),
  // is sent when a decision arrives, this page's or the next's, with its own id and the first
  // token it got: the service counts an event id once. The body is text/plain: no pre-flight.
  // Events, whatever is stored: a page whose library gives arrays a toJSON (Prototype.js 1.6)
  // stores a string, whose characters are no events.
  const outbox = () => safe(() => JSON.parse(get("swl_out")).filter((e) => e.id)) || [];
  const store = (events) => put("swl_out", JSON.stringify(events));
  const post = (event) => {
    event.token || (event.token = decision.token);
    fetch(api + "events", { method: "POST", body: JSON.stringify(event), keepalive: 1 })
      // 205, to a heartbeat: the page shows a number its visitor no longer holds (its hold ended
      // while the page was hidden or in the browser's cache, and another visitor has it now). The
      // page asks again, or a call to the number it shows would be the other visitor's.
      .then((r) => (r.status == 205 && ask(here), r.status < 429) && store(outbox().filter((e) => e.id != event.id)))
      .catch(() => {});
  };
  const send = (event) => {
    if (!consented) return;
    if (decision) post(event); // it takes the decision's token, and is kept with it
    if (event.id) store([...outbox(), event].slice(-20));
  };
  // Forms and tel: taps, heard in the capture phase (`watch`). A form inside data-swapline-noswap
  // is none: a search box, the demo's preview form. A page view's forms count once, as do its
  // taps (the service counts an id once): a double click on a submit button fires two submit
  // events, a form that checks its fields by script one a try, a quiz one a step. A tap's id is
  // its own: an answer clears the outbox by id.
  const sent = (e) => !e.target.closest(NOSWAP) && send({ type: "form", id: view });
  const tapped = (e) => safe(() => e.target.closest('a[href^="tel:"]')) && send({ type: "tel_click", id: "t" + view });
  watch(doc); // heard from now on; nothing swaps before the answer

  // The API's name is window.swapline unless data-name says another. One the page already has
  // (a script's, an element's id) stays the page's: the snippet swaps all the same, without an
  // API (README, "data-name"; the 2 KB budget has no room for a console message).
  window[name] || (window[name] = {
    ready: (cb) => decided.then(cb),
    swap: (node) => apply(node || doc.body),
    goal: (name) => send({ type: "goal", id: rid(), name }),
    // Consent managers say yes again on every page: the page view is asked for once.
    // A no, every time: what the snippet keeps goes.
    consent: (yes) => {
      if (!yes || !consented) {
        consented = yes;
        if (yes) put("swl_consent", 1);
        else safe(() => ["swl_vid", "swl_visit", "swl_out", "swl_consent"].map((key) => delete localStorage[key]));
        keep(vid);
        if (yes) ask(); // now the visit, its number and the page view count
      }
    },
  });

  // A page view: the page's own, then each route a single-page app goes to (pushState,
  // replaceState, popstate), which the service takes as the next page of the same visit. The
  // visit goes on from page to page: the last decision's token comes back with the next page view.
  // A preview link's swapline_preview and swapline_preview_city the service reads in the page's url.
  let here, beating, view;
  const ask = (ref = doc.referrer) => {
    here = location.href.split("#")[0]; // without its fragment: the service reads none
    writes = new WeakMap();
    // The last route's texts are not this one's: what the app renders now keeps its own until
    // this route's answer, and keeps them if it never comes. Its number is the visit's: it stays.
    // What data-hide names hides again meanwhile, as on the first page view.
    if (decision) decision.swaps = [];
    hiding.disabled = 0;
    // Blank values count as absent: consent=0 is what says no (+!!: 1 or 0). A first page view
    // has no visit yet: `undefined`, as the service takes any token it did not sign, a new visit.
    const asked = (view = rid());
    const query = new URLSearchParams({ site: data.site, url: here, ref, vid, visit: get("swl_visit"), consent: +!!consented });
    // On time or not at all: past data-timeout the page goes on without the answer, whether the
    // fetch can be aborted or not (a polyfill's cannot).
    Promise.race([fetch(api + "decide?" + query), new Promise((_, late) => setTimeout(late, +data.timeout || 1000))])
      // Not ok: null, whose phone (read first, below) throws, so that the catch takes it as a failure.
      .then((r) => (r.ok ? r.json() : null))
      .then((answer) => {
        // An earlier request's, come after a later one (another page view since): a route the
        // visitor left, a page view without consent asked before the one with it.
        if (asked != view) return;
        const phone = answer.phone || {};
        keep(answer.vid);
        // It carries the visit; a preview's page view is nobody's: the next page goes on with the
        // visitor's own.
        answer.preview || put("swl_visit", answer.token);
        // The page's number as people print it, where the visitor's differs (after no digit).
        pattern = phone.replaces_pattern && RegExp(phone.replaces_pattern, "gu");
        digits = phone.digits;
        // The last route's swaps leave with it, and the new route's are written afresh, within the
        // same task. Each puts back what it found where the node still shows what it wrote: one
        // the app has written its own text into since keeps the app's. The latest first, so the
        // page's own value is the one that stays.
        written.forEach(([node, property, value, swapped]) => node[property] == swapped && (node[property] = value));
        written = [];
        decision = answer;
        outbox().forEach(post); // what waited for a decision (one in flight again: counted once)
        // Now, even while the page is still loading: what it adds from now on is swapped as it
        // comes (it is watched from the start).
        apply(doc);
        beating = beating || (phone.heartbeat && setInterval(seen, phone.heartbeat)); // one timer
        hiding.disabled = 1;
        done(answer);
      })
      .catch(() => { // the first page view's failure: nothing swaps; later ones change nothing
        hiding.disabled = 1;
        done(null);
      });
  };
  // A tab opened in the background asks for nothing, a number least of all, until it is seen.
  // Then, while its number is held for it, it beats each time it is seen again (a tab come back
  // to, a page back from the browser's cache) and every `heartbeat` ms while it is visible.
  const seen = () => doc.hidden || (here ? beating && send({ type: "heartbeat" }) : ask());
  addEventListener("visibilitychange", seen);
  seen();
  // Another path or query only: a link to a place in the page (#contacts) fires popstate in
  // Chrome, and is the same page; so is an app's replaceState of the address it has.
  const route = () => location.href.split("#")[0] != here && ask(here);
  patch(history, "pushState", route);
  patch(history, "replaceState", route); // a redirect (React Router's <Navigate replace>)
  addEventListener("popstate", route);
})();
