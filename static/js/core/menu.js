/*
 * The header's menu on narrow screens: the Menu button shows and hides the navigation
 * and the user's links (#site-menu). On wide screens the button is not shown and the
 * menu is always open (app.css). Without this script the header shows everything.
 * Escape closes the menu and puts the focus back on its button.
 */

const header = document.querySelector(".site-header");
const button = document.getElementById("menu-toggle");
const menu = document.getElementById("site-menu");
function setOpen(open) {
  button.setAttribute("aria-expanded", String(open));
  header.classList.toggle("menu-open", open);
}

if (header && button && menu) {
  header.classList.add("has-menu");
  button.addEventListener("click", () => {
    setOpen(button.getAttribute("aria-expanded") !== "true");
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || button.getAttribute("aria-expanded") !== "true") return;
    setOpen(false);
    button.focus();
  });
}
