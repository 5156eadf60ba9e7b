// portero live reload: reloads the page when the files it serves change,
// or only its stylesheets when nothing but CSS changed. Injected by portero
// into every HTML page of the SPA while live reload is on.
(function () {
  "use strict";
  if (window.__porteroLiveReload) return;
  window.__porteroLiveReload = true;

  var url = (location.protocol === "https:" ? "wss://" : "ws://") +
    location.host + "/__portero/livereload";
  var MIN_DELAY = 250, MAX_DELAY = 5000;
  var delay = MIN_DELAY;
  // Set once a connection was lost: portero restarted, and files may have
  // changed meanwhile, so the page reloads as soon as it is back.
  var lost = false;

  function refreshStylesheets() {
    var stamp = String(Date.now());
    var links = document.querySelectorAll('link[rel~="stylesheet"][href]');
    Array.prototype.forEach.call(links, function (link) {
      var href = new URL(link.getAttribute("href"), location.href);
      href.searchParams.set("portero-reload", stamp);
      link.href = href.toString();
    });
  }

  function onMessage(event) {
    var msg;
    try {
      msg = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (msg.type !== "change") return;
    if (msg.css_only) {
      refreshStylesheets();
    } else {
      location.reload();
    }
  }

  function connect() {
    var socket = new WebSocket(url);
    socket.onopen = function () {
      delay = MIN_DELAY;
      if (lost) location.reload();
    };
    socket.onmessage = onMessage;
    socket.onclose = function () {
      lost = true;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, MAX_DELAY);
    };
  }

  connect();
})();
