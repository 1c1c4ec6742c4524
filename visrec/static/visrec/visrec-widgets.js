/* visrec's storefront widgets for pages that are not Django templates (headless shops, other
 * frontends): dependency-free web components that call visrec's REST API.
 *
 *   <script src="/static/visrec/visrec.js" data-endpoint="/api/visrec/events/" defer></script>  (tracking)
 *   <script src="/static/visrec/visrec-widgets.js" defer></script>
 *   <visrec-similar product="12" limit="8" title="Looks like this"></visrec-similar>
 *   <visrec-for-you limit="8" product="12" exclude="3,4"></visrec-for-you>
 *
 * Attributes: api (default "/api/visrec/"), limit, title, and the API's filters (in-stock,
 * category, min-price, max-price, diversity); on <visrec-for-you> also product, exclude and
 * explain="true" (each card says why it is there, with the shopper's product that caused it). Each renders the same accessible markup as the
 * template tags (a titled section, a list of linked cards with alt text, lazy images, the
 * shop's price text), and hands its cards to visrec.js for impression and click reports. Any
 * error (network, 4xx, 5xx, bad JSON) renders nothing and fires a "visrec:error" event; a
 * list with no results renders nothing. No framework, no shadow DOM (the shop's CSS applies),
 * no third party.
 */
(function () {
  "use strict";
  if (!window.customElements || window.customElements.get("visrec-similar")) {
    return;
  }
  var VERSION = "0.1.0";
  var FILTERS = ["in-stock", "category", "min-price", "max-price", "diversity", "exclude-near-duplicates"];

  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  function card(item, widget, position) {
    var li = document.createElement("li");
    li.className = "visrec-card";
    var link = document.createElement("a");
    link.href = text(item.url);
    link.dataset.visrecWidget = widget;
    link.dataset.visrecPosition = String(position);
    link.dataset.visrecProduct = text(item.id);
    if (item.image_url) {
      var img = document.createElement("img");
      img.src = item.image_url;
      img.alt = text(item.alt || item.name);
      img.loading = "lazy";
      img.width = 200;
      img.height = 200;
      link.appendChild(img);
    }
    var name = document.createElement("span");
    name.className = "visrec-name";
    name.textContent = text(item.name);
    link.appendChild(name);
    li.appendChild(link);
    if (item.price_display) {
      var price = document.createElement("span");
      price.className = "visrec-price";
      price.textContent = item.price_display;
      li.appendChild(price);
    }
    if (item.reason) {
      var reason = document.createElement("span");
      reason.className = "visrec-reason";
      reason.textContent = text(item.reason.text);
      var because = item.reason.because;
      if (because) {
        if (because.image_url) {
          var thumb = document.createElement("img");
          thumb.src = because.image_url;
          thumb.alt = "";
          thumb.width = 28;
          thumb.height = 28;
          thumb.loading = "lazy";
          reason.appendChild(document.createTextNode(" "));
          reason.appendChild(thumb);
        }
        reason.appendChild(document.createTextNode(" " + text(because.name)));
      }
      li.appendChild(reason);
    }
    return li;
  }

  var counter = 0;

  function define(tag, widget, defaultTitle, path) {
    customElements.define(tag, class extends HTMLElement {
      static get observedAttributes() {
        return ["product", "limit", "exclude"];
      }

      connectedCallback() {
        this.load();
      }

      attributeChangedCallback() {
        if (this.isConnected) {
          this.load();
        }
      }

      url() {
        var api = this.getAttribute("api") || "/api/visrec/";
        var params = new URLSearchParams();
        params.set("limit", this.getAttribute("limit") || "8");
        var self = this;
        FILTERS.forEach(function (name) {
          var value = self.getAttribute(name);
          if (value !== null && value !== "") {
            params.set(name.replace(/-/g, "_"), value);
          }
        });
        if (widget === "foryou") {
          ["product", "exclude", "explain"].forEach(function (name) {
            var value = self.getAttribute(name);
            if (value) {
              params.set(name, value);
            }
          });
        }
        return api.replace(/\/?$/, "/") + path(this) + "?" + params.toString();
      }

      load() {
        var self = this;
        var token = (self._token = (self._token || 0) + 1);
        if (widget === "similar" && !self.getAttribute("product")) {
          return self.fail(new Error("a product attribute is required"));
        }
        fetch(self.url(), {credentials: "same-origin", headers: {"Accept": "application/json"}})
          .then(function (response) {
            if (!response.ok) {
              throw new Error("HTTP " + response.status);
            }
            return response.json();
          })
          .then(function (body) {
            if (token === self._token) {
              self.render(Array.isArray(body.results) ? body.results : []);
            }
          })
          .catch(function (error) {
            if (token === self._token) {
              self.fail(error);
            }
          });
      }

      render(results) {
        this.textContent = "";
        if (!results.length) {
          this.hidden = true;
          return;
        }
        var id = "visrec-" + widget + "-title-" + (++counter);
        var section = document.createElement("section");
        section.className = "visrec-widget visrec-" + widget;
        section.setAttribute("aria-labelledby", id);
        section.dataset.visrecWidget = widget;
        var heading = document.createElement("h2");
        heading.id = id;
        heading.textContent = this.getAttribute("title") || defaultTitle;
        section.appendChild(heading);
        var list = document.createElement("ul");
        list.className = "visrec-row";
        results.forEach(function (item, position) {
          list.appendChild(card(item, widget, position));
        });
        section.appendChild(list);
        this.appendChild(section);
        this.hidden = false;
        if (window.visrec && window.visrec.observe) {
          window.visrec.observe(section);  // impressions; clicks are visrec.js's document listener
        }
        this.dispatchEvent(new CustomEvent("visrec:rendered", {bubbles: true, detail: {count: results.length}}));
      }

      fail(error) {
        this.textContent = "";
        this.hidden = true;
        this.dispatchEvent(new CustomEvent("visrec:error", {bubbles: true, detail: {message: String(error)}}));
      }
    });
  }

  define("visrec-similar", "similar", "Looks like this", function (element) {
    return "products/" + encodeURIComponent(element.getAttribute("product")) + "/similar/";
  });
  define("visrec-for-you", "foryou", "Picked for you", function () {
    return "for-you/";
  });
  window.visrecWidgets = {version: VERSION};
})();
