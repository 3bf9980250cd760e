/* durable_celery admin: the page of an active workflow run reloads every few seconds (the
   server renders data-dc-refresh only while the run is active). The scroll position and the
   sections the reader opened survive the reload; nothing reloads while the reader types or
   selects text, while the tab is hidden, or while "pause" is ticked. Only GET pages carry the
   attribute, so a reload never re-submits a form. */
(function () {
  "use strict";
  var root = document.querySelector("[data-dc-refresh]");
  if (!root) { return; }
  var seconds = parseInt(root.getAttribute("data-dc-refresh"), 10);
  if (!(seconds > 0)) { return; }
  var key = "dc-refresh:" + window.location.pathname;
  var pause = document.getElementById("dc-refresh-pause");
  try {
    var saved = JSON.parse(window.sessionStorage.getItem(key) || "null");
    window.sessionStorage.removeItem(key);
    if (saved) {
      saved.open.forEach(function (id) {
        var element = document.getElementById(id);
        if (element) { element.open = true; }
      });
      window.scrollTo(0, saved.y || 0);
    }
  } catch (error) { /* no session storage: reload without restoring */ }
  function busy() {
    var active = document.activeElement;
    if (active && active !== pause && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) {
      return true;
    }
    var selection = window.getSelection ? String(window.getSelection()) : "";
    return selection.length > 0;
  }
  window.setInterval(function () {
    if ((pause && pause.checked) || document.hidden || busy()) { return; }
    var open = Array.prototype.map.call(document.querySelectorAll("details[open][id]"),
                                        function (element) { return element.id; });
    try {
      window.sessionStorage.setItem(key, JSON.stringify({open: open, y: window.scrollY}));
    } catch (error) { /* reload anyway */ }
    window.location.reload();
  }, seconds * 1000);
}());
