/** The sidebar as a drawer on narrow screens. */
import { ui } from './dom.js';

export function openDrawer() {
  ui.app.classList.add('drawer-open');
  ui.menuButton.setAttribute('aria-expanded', 'true');
  ui.scrim.hidden = false;
}

export function closeDrawer() {
  ui.app.classList.remove('drawer-open');
  ui.menuButton.setAttribute('aria-expanded', 'false');
  ui.scrim.hidden = true;
}
