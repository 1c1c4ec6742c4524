/* visrec's tracking script: reports what shoppers see and click in visrec's widgets, and
 * product views, to visrec's events endpoint. No framework, no third party, no cookie of its own.
 *
 * Added by {% visrec_script %} (or {% visrec_script product=product %} on a product page, to
 * report the view from the browser instead of the server):
 *   <script src=".../visrec/visrec.js" data-endpoint="/api/visrec/events/" data-csrf="..."
 *           data-product="12" defer></script>
 *
 * - impressions: a card of a [data-visrec-widget] row that is at least half visible for the
 *   first time on this page;
 * - clicks: on a card's link (a[data-visrec-product]), with the widget and position;
 * - a view of data-product, once per page.
 * Events are batched (at most 20, or half a second) and sent with keepalive, so a click that
 * leaves the page is still delivered. Any error is swallowed: the page never breaks.
 * window.visrec.observe(element) reports cards added to the page later.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.dataset.endpoint || !window.fetch) {
    return;
  }
  var endpoint = script.dataset.endpoint;
  var csrf = script.dataset.csrf || "";
  var queue = [];
  var timer = null;
  var shown = new WeakSet();
  var MAX_BATCH = 20;
  var DELAY_MS = 500;

  function send() {
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    if (!queue.length) {
      return;
    }
    var batch = queue.splice(0, queue.length);
    try {
      fetch(endpoint, {
        method: "POST",
        credentials: "same-origin",
        keepalive: true,
        headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
        body: JSON.stringify({events: batch})
      }).catch(function () {});
    } catch (e) { /* never break the page */ }
  }

  function push(event) {
    queue.push(event);
    if (queue.length >= MAX_BATCH) {
      send();
    } else if (!timer) {
      timer = setTimeout(send, DELAY_MS);
    }
  }

  function cardEvent(type, link) {
    var position = parseInt(link.dataset.visrecPosition, 10);
    var event = {type: type, product: link.dataset.visrecProduct, source: link.dataset.visrecWidget || ""};
    if (!isNaN(position)) {
      event.position = position;
    }
    return event;
  }

  var observer = null;
  if (window.IntersectionObserver) {
    observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting && !shown.has(entry.target)) {
          shown.add(entry.target);
          observer.unobserve(entry.target);
          push(cardEvent("impression", entry.target));
        }
      });
    }, {threshold: 0.5});
  }

  function observe(root) {
    if (!observer || !root || !root.querySelectorAll) {
      return;
    }
    root.querySelectorAll("a[data-visrec-product]").forEach(function (link) {
      if (!shown.has(link)) {
        observer.observe(link);
      }
    });
  }

  document.addEventListener("click", function (e) {
    var link = e.target && e.target.closest ? e.target.closest("a[data-visrec-product]") : null;
    if (link) {
      push(cardEvent("click", link));
      send();
    }
  }, true);

  window.addEventListener("pagehide", send);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") {
      send();
    }
  });

  function start() {
    if (script.dataset.product) {
      push({type: "view", product: script.dataset.product});
    }
    observe(document);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
  window.visrec = {observe: observe, flush: send};
})();
