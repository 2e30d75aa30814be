(function () {
  "use strict";
  var each = function (list, fn) { Array.prototype.forEach.call(list, fn); };

  // Sortable tables: a click (or Enter) on a header sorts by its column; numbers by data-v.
  function sortKey(cell) {
    var v = cell ? cell.getAttribute("data-v") : null;
    if (v !== null) { return v === "" ? null : parseFloat(v); }
    return cell ? cell.textContent.trim().toLowerCase() : null;
  }
  each(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.tHead.rows[table.tHead.rows.length - 1].cells;
    each(heads, function (th, col) {
      th.tabIndex = 0;
      th.classList.add("sorter");
      var sort = function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        each(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = sortKey(a.cells[col]), y = sortKey(b.cells[col]);
          if (x === null || y === null) { return (x === null) - (y === null); }  // missing last
          var order = x < y ? -1 : x > y ? 1 : 0;
          return ascending ? order : -order;
        });
        each(rows, function (row) { body.appendChild(row); });
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
      });
    });
  });

  // Toggles: an unchecked box with data-hide="name" puts class "hide-name" on <body>.
  each(document.querySelectorAll("input[data-hide]"), function (box) {
    var apply = function () {
      document.body.classList.toggle("hide-" + box.getAttribute("data-hide"), !box.checked);
    };
    box.addEventListener("change", apply);
    apply();
  });

  // Example queries: buttons switch which query of an example is shown.
  each(document.querySelectorAll(".example"), function (example) {
    var buttons = example.querySelectorAll("button[data-q]");
    each(buttons, function (button) {
      button.addEventListener("click", function () {
        each(example.querySelectorAll(".query"), function (q) {
          q.hidden = q.getAttribute("data-q") !== button.getAttribute("data-q");
        });
        each(buttons, function (b) { b.setAttribute("aria-pressed", b === button ? "true" : "false"); });
      });
    });
  });
})();
