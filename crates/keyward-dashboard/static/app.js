// Keyward dashboard: dialogs, copy to clipboard, and forms that submit when
// a selector changes. Everything else is plain HTML forms.
"use strict";

(function () {
  function fill(dialog, data) {
    Object.keys(data).forEach(function (name) {
      var value = data[name] == null ? "" : String(data[name]);
      dialog.querySelectorAll('[data-slot="' + name + '"]').forEach(function (el) {
        el.textContent = value;
      });
      var input = dialog.querySelector('[name="' + name + '"]');
      if (input && input.type !== "hidden") input.value = value;
    });
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-open-dialog]");
    if (opener && !opener.disabled) {
      var dialog = document.getElementById(opener.getAttribute("data-open-dialog"));
      if (!dialog) return;
      var form = dialog.querySelector("form[data-dialog-form]");
      if (form && opener.dataset.action) form.setAttribute("action", opener.dataset.action);
      if (opener.dataset.fill) fill(dialog, JSON.parse(opener.dataset.fill));
      dialog.returnFocusTo = opener;
      dialog.showModal();
      return;
    }
    var closer = event.target.closest("[data-close-dialog]");
    if (closer) {
      closer.closest("dialog").close();
      return;
    }
    var copier = event.target.closest("[data-copy]");
    if (copier) {
      var field = document.getElementById(copier.getAttribute("data-copy"));
      copy(field, copier);
      return;
    }
    var done = event.target.closest("[data-done]");
    if (done) {
      forgetSecret(done.closest("dialog"), done.getAttribute("data-done"));
    }
  });

  function copy(field, button) {
    var label = button.querySelector("span") || button;
    function copied() {
      label.textContent = "Copied";
      setTimeout(function () { label.textContent = "Copy"; }, 2000);
    }
    field.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(copied, function () {
        if (document.execCommand("copy")) copied();
      });
    } else if (document.execCommand("copy")) {
      copied();
    }
  }

  // The secret leaves the page: the field is emptied and the page is
  // replaced in history, so Back cannot bring it back.
  function forgetSecret(dialog, next) {
    // Done closes the dialog, and closing calls this again: leave once.
    if (dialog.hasAttribute("data-leaving")) return;
    dialog.setAttribute("data-leaving", "");
    dialog.querySelectorAll("input").forEach(function (i) { i.value = ""; });
    if (dialog.open) dialog.close();
    window.location.replace(next);
  }

  document.querySelectorAll("dialog").forEach(function (dialog) {
    dialog.addEventListener("close", function () {
      if (dialog.hasAttribute("data-secret-dialog")) {
        var done = dialog.querySelector("[data-done]");
        if (done) forgetSecret(dialog, done.getAttribute("data-done"));
      } else if (dialog.returnFocusTo) {
        dialog.returnFocusTo.focus();
      }
    });
    // A click on the backdrop closes the dialog (not the secret one).
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog && !dialog.hasAttribute("data-secret-dialog")) dialog.close();
    });
  });

  document.querySelectorAll("dialog[data-show-on-load]").forEach(function (dialog) {
    dialog.showModal();
    // The page was a form post: reloading it must not post again.
    var done = dialog.querySelector("[data-done]");
    if (done && window.history.replaceState) window.history.replaceState(null, "", done.getAttribute("data-done"));
  });

  document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
  document.documentElement.classList.add("js");
})();
