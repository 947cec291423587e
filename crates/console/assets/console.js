// The console's one script, served by the coordinator (no network).
// Progressive enhancement only: every page works without it.
"use strict";

// GB 11643 (resident ID) and GB 32100 (unified social credit code) check
// characters, checked as the user types.
const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK = "10X98765432";
const USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

function residentIdValid(id) {
  if (!/^\d{17}[\dX]$/.test(id)) return false;
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(id[i]) * ID_WEIGHTS[i];
  return ID_CHECK[sum % 11] === id[17];
}

function usccValid(code) {
  if (code.length !== 18) return false;
  let sum = 0;
  for (let i = 0; i < 17; i++) {
    const v = USCC_CHARS.indexOf(code[i]);
    if (v < 0) return false;
    sum += v * USCC_WEIGHTS[i];
  }
  const check = USCC_CHARS[(31 - (sum % 31)) % 31];
  return check === code[17];
}

function checkInput(input) {
  const hint = document.getElementById(input.getAttribute("aria-describedby"));
  const value = input.value.trim().toUpperCase();
  let state = "";
  if (value.length > 0 && value.length < 18) state = "short";
  else if (value.length === 18) state = residentIdValid(value) || usccValid(value) ? "ok" : "bad";
  input.setCustomValidity(state === "bad" ? (hint ? hint.dataset.bad : "check character") : "");
  if (hint) {
    hint.textContent = state ? hint.dataset[state] : "";
    hint.className = "hint " + state;
  }
}

// A cell a spreadsheet would evaluate as a formula gets a leading ' (OWASP's
// advice on CSV injection), as in every CSV the server writes; plain numbers
// stay numbers.
function safeCell(t) {
  if (/^[-+]\d+(\.\d+)?([eE]\d+)?$/.test(t)) return t;
  return /^[=+\-@\t\r]/.test(t) ? "'" + t : t;
}

function tableCsv(root) {
  const quote = (raw) => {
    const t = safeCell(raw);
    return /[",\n]/.test(t) ? '"' + t.replace(/"/g, '""') + '"' : t;
  };
  const lines = [];
  root.querySelectorAll(".dataset").forEach((block) => {
    const title = block.querySelector("h3 a");
    const table = block.querySelector("table");
    if (!table) return;
    table.querySelectorAll("tr").forEach((tr, i) => {
      const cells = Array.from(tr.children).map((c) => quote(c.textContent));
      lines.push([quote(i === 0 ? "dataset" : title.textContent)].concat(cells).join(","));
    });
  });
  return lines.join("\n") + "\n";
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("input[data-check=id]").forEach((input) => {
    input.addEventListener("input", () => checkInput(input));
    checkInput(input);
  });
  document.querySelectorAll("button[data-action=print]").forEach((b) =>
    b.addEventListener("click", () => window.print()));
  document.querySelectorAll("button[data-action=csv]").forEach((b) =>
    b.addEventListener("click", () => {
      const blob = new Blob(["\ufeff" + tableCsv(document.querySelector(b.dataset.table))], { type: "text/csv" });
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = b.dataset.file;
      a.click();
    }));
});
