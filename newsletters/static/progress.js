// Live figures on the progress page of a send: polls the page's JSON every two seconds
// while the edition is sending and writes the figures (formatted by the server) into the
// elements marked data-field. When the status changes (sent, paused, cancelled) the page
// is reloaded, so that its buttons fit the new status. Without JavaScript the page has a
// "Refresh" link instead.
(function () {
  "use strict";
  var INTERVAL_MS = 2000;
  var root = document.getElementById("progress");
  if (!root || !window.fetch) {
    return;
  }
  var url = root.getAttribute("data-progress-url");
  var status = root.getAttribute("data-status");
  var bar = document.getElementById("progress-bar");

  function show(data) {
    var fields = root.querySelectorAll("[data-field]");
    for (var i = 0; i < fields.length; i++) {
      var name = fields[i].getAttribute("data-field");
      var value = data.display[name];
      if (value !== undefined && fields[i].textContent !== value) {
        fields[i].textContent = value;
      }
    }
    if (bar) {
      bar.max = Math.max(data.recipients, 1);
      bar.value = data.done;
      bar.textContent = data.display.done + " / " + data.display.recipients;
    }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.redirected) {
          // The session has ended: the page itself now leads to the login.
          window.location.reload();
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        if (!data) {
          return;
        }
        show(data);
        if (data.status !== status) {
          window.location.reload();
        } else {
          window.setTimeout(poll, INTERVAL_MS);
        }
      })
      .catch(function () {
        // A network hiccup: try again a little later; the Refresh link always works.
        window.setTimeout(poll, INTERVAL_MS * 5);
      });
  }

  if (status === "sending") {
    window.setTimeout(poll, INTERVAL_MS);
  }
})();
