// smtpy web interface: small conveniences on top of forms that work
// without JavaScript. First-party, no dependencies, loaded with `defer`.
"use strict";
(function () {
  function say(text) {
    var status = document.getElementById("status");
    if (status) { status.textContent = ""; var p = document.createElement("p"); p.className = "flash ok"; p.textContent = text; status.appendChild(p); }
  }

  // Copy buttons: <button type="button" data-copy="text"> or
  // data-copy-target="element id" (copies that element's text or value).
  document.addEventListener("click", function (e) {
    var btn = e.target.closest("[data-copy],[data-copy-target]");
    if (!btn) { return; }
    e.preventDefault();
    var text = btn.getAttribute("data-copy");
    if (text === null) {
      var el = document.getElementById(btn.getAttribute("data-copy-target"));
      text = el ? (el.value !== undefined ? el.value : el.textContent) : "";
    }
    var done = function () { var old = btn.textContent; btn.textContent = "Copied"; say("Copied to the clipboard."); setTimeout(function () { btn.textContent = old; }, 1500); };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, function () { say("Copy failed: select the text and copy it by hand."); });
    }
  });

  // Confirmations: <form data-confirm="Delete this alias?">.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { e.preventDefault(); return; }
    // In-place toggles: <form data-inline> posts with fetch and expects
    // JSON {"ok": true, "label": "…", "pressed": true|false, "message": "…"}.
    if (form.hasAttribute("data-inline") && window.fetch) {
      e.preventDefault();
      var button = form.querySelector("button");
      fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { "Accept": "application/json" },
        credentials: "same-origin"
      }).then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
        .then(function (res) {
          if (!res.ok) { say(res.body.message || res.body.detail || "The change failed."); return; }
          if (button && res.body.label) { button.textContent = res.body.label; }
          if (button && res.body.pressed !== undefined) { button.setAttribute("aria-pressed", String(res.body.pressed)); }
          if (res.body.state !== undefined) {
            var row = form.closest("[data-state]");
            if (row) { row.setAttribute("data-state", res.body.state); var cell = row.querySelector("[data-state-text]"); if (cell) { cell.textContent = res.body.state; } }
          }
          if (res.body.message) { say(res.body.message); }
        })
        .catch(function () { form.submit(); });
    }
  });

  // Select all: <input type="checkbox" data-select-all="ids"> checks every
  // checkbox named "ids" in the same form.
  document.addEventListener("change", function (e) {
    var box = e.target;
    if (box.hasAttribute && box.hasAttribute("data-select-all")) {
      var name = box.getAttribute("data-select-all");
      var scope = box.form || document;
      scope.querySelectorAll('input[type="checkbox"][name="' + name + '"]').forEach(function (c) { c.checked = box.checked; });
    }
    // Auto-submit: <select data-autosubmit> submits its form on change.
    if (box.hasAttribute && box.hasAttribute("data-autosubmit") && box.form) { box.form.submit(); }
  });

  // Tokens from mail links travel in the fragment (#token=…), never in a
  // URL the server sees: copy it into <input data-fragment-token> and
  // drop it from the address bar. A link that first needs a sign-in keeps
  // its fragment through the sign-in form's `next` field, so the page it
  // leads to still gets the token.
  var target = document.querySelector("input[data-fragment-token]");
  var next = document.querySelector('form[action="/login"] input[name="next"]');
  if (location.hash.indexOf("#token=") === 0) {
    if (target) {
      target.value = decodeURIComponent(location.hash.slice(7));
      history.replaceState(null, "", location.pathname + location.search);
    } else if (next && next.value.indexOf("#") < 0) {
      next.value += location.hash;
      history.replaceState(null, "", location.pathname + location.search);
    }
  }
})();
