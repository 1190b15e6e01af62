// Live regions: every element with data-live="<url>" is re-rendered from that URL's HTML
// fragment every 2 s (the server renders it with the same template as the page). A region is
// skipped while the pointer is over a form in it, so a click is never swapped away.
(function () {
  "use strict";
  var PERIOD_MS = 2000;

  function refresh(region) {
    if (region.dataset.busy === "1" || region.querySelector("form:hover")) return;
    region.dataset.busy = "1";
    fetch(region.dataset.live, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload(); // the session ended: show the sign-in page
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          region.innerHTML = html;
          region.dataset.updated = String(Date.now());
          document.body.classList.remove("stale");
        }
      })
      .catch(function () {
        document.body.classList.add("stale"); // the API is unreachable: say so, keep trying
      })
      .finally(function () {
        region.dataset.busy = "0";
      });
  }

  function start() {
    var regions = document.querySelectorAll("[data-live]");
    if (!regions.length) return;
    window.setInterval(function () {
      regions.forEach(refresh);
    }, PERIOD_MS);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
