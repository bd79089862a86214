/*
 * Breaking news widget for the campaign website. No framework, no dependencies.
 *
 *   <div data-breaking-news data-limit="8" data-api="https://MONITOR/public/latest_headlines.json"></div>
 *   <script src="/js/breaking-news.js" defer></script>
 *
 * Renders the latest headlines as an accessible list (pinned first, as the API orders them),
 * with outlet, relative time in New Zealand time and any staff note. Text only ever goes in
 * through textContent, so a hostile headline cannot inject markup. Refreshes every few minutes
 * and shows a quiet fallback when the API cannot be reached, keeping what it already shows.
 */
(function () {
  "use strict";

  var REFRESH_MS = 3 * 60 * 1000;
  var ZONE = "Pacific/Auckland";
  var relativeFormat = new Intl.RelativeTimeFormat("en-NZ", { numeric: "auto" });
  var fullFormat = new Intl.DateTimeFormat("en-NZ", {
    timeZone: ZONE, dateStyle: "medium", timeStyle: "short"
  });

  function relative(date, now) {
    var seconds = Math.round((date.getTime() - now.getTime()) / 1000);
    var units = [["day", 86400], ["hour", 3600], ["minute", 60]];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(seconds) >= units[i][1]) {
        return relativeFormat.format(Math.round(seconds / units[i][1]), units[i][0]);
      }
    }
    return "just now";
  }

  function safeUrl(url) {
    try {
      var parsed = new URL(url);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function render(root, items) {
    var list = element("ul", "breaking-news__list");
    var now = new Date();
    items.forEach(function (item) {
      var li = element("li", "breaking-news__item" + (item.pinned ? " breaking-news__item--pinned" : ""));
      var href = safeUrl(item.url);
      var headline = element(href ? "a" : "span", "breaking-news__headline", item.title);
      if (href) {
        headline.href = href;
        headline.rel = "noopener";
      }
      if (item.pinned) li.appendChild(element("span", "breaking-news__pin", "Pinned: "));
      li.appendChild(headline);
      var meta = element("p", "breaking-news__meta");
      meta.appendChild(element("span", "breaking-news__outlet", item.outlet));
      var published = new Date(item.published);
      if (!isNaN(published.getTime())) {
        meta.appendChild(document.createTextNode(" · "));
        var time = element("time", "breaking-news__time", relative(published, now));
        time.dateTime = published.toISOString();
        time.title = fullFormat.format(published);
        meta.appendChild(time);
      }
      li.appendChild(meta);
      if (item.note) li.appendChild(element("p", "breaking-news__note", item.note));
      list.appendChild(li);
    });
    var old = root.querySelector(".breaking-news__list");
    if (old) root.replaceChild(list, old); else root.appendChild(list);
    status(root, items.length ? "" : "No headlines yet.");
  }

  function status(root, message) {
    var box = root.querySelector(".breaking-news__status");
    if (!box) {
      box = element("p", "breaking-news__status");
      box.setAttribute("role", "status");
      root.appendChild(box);
    }
    box.textContent = message;
    box.hidden = !message;
  }

  function load(root) {
    root.setAttribute("aria-busy", "true");
    return fetch(root.getAttribute("data-api"), { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (items) {
        if (!Array.isArray(items)) throw new Error("unexpected response");
        var limit = parseInt(root.getAttribute("data-limit") || "", 10);
        render(root, limit > 0 ? items.slice(0, limit) : items);
        root.setAttribute("data-state", "ok");
      })
      .catch(function () {
        // Quiet fallback: keep any headlines already shown; say so gently.
        status(root, "Latest coverage is unavailable right now. Please check back soon.");
        root.setAttribute("data-state", "unavailable");
      })
      .then(function () {
        root.setAttribute("aria-busy", "false");
      });
  }

  function start(root) {
    if (!root.getAttribute("aria-label")) root.setAttribute("aria-label", "Latest coverage");
    load(root);
    setInterval(function () { load(root); }, REFRESH_MS);
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-breaking-news]"), start);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
