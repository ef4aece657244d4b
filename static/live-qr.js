// A live QR on the holder's ticket page: every 10 s the next code replaces
// the one shown (each is good for 30 s to a minute at the door), so the code
// on screen is always current and a screenshot soon goes stale.
(function () {
  "use strict";
  var box = document.querySelector("[data-live-qr]");
  if (!box) return;
  var path = box.getAttribute("data-live-qr");

  function refresh() {
    fetch(path, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        // Checked in, cancelled or the link expired: the page says which.
        if (response.status === 403 || response.status === 404) {
          location.reload();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (text) {
        if (!text) return;
        var svg = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
        if (svg.nodeName.toLowerCase() !== "svg") return;
        box.replaceChildren(document.importNode(svg, true));
      })
      .catch(function () {});
  }

  setInterval(refresh, 10000);
  // A phone that slept shows a stale code first: refresh on waking.
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
  });
})();
