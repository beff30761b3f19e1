// Opt-in desktop notifications: a mention while LiveChat is in the background shows a system
// notification (the browser asks the user once); clicking it opens the room. The choice is kept
// per user in localStorage.

const key = (userId) => `livechat.desktopNotifications.${userId}`;

export function desktopSupported() {
  return typeof Notification === 'function';
}

export function desktopEnabled(userId) {
  try {
    return desktopSupported() && Notification.permission === 'granted' && localStorage.getItem(key(userId)) === '1';
  } catch { return false; }
}

/** Turns them on (asking the browser's permission) or off; resolves to whether they are on. */
export async function setDesktop(userId, on) {
  try {
    if (!on) { localStorage.removeItem(key(userId)); return false; }
    if (!desktopSupported()) return false;
    const permission = Notification.permission === 'granted' ? 'granted' : await Notification.requestPermission();
    if (permission !== 'granted') return false;
    localStorage.setItem(key(userId), '1');
    return true;
  } catch { return false; }
}

/** Shows `title` / `body` if enabled and the page is not being looked at. */
export function notifyDesktop(userId, { title, body, tag, onOpen }) {
  if (document.visibilityState === 'visible' || !desktopEnabled(userId)) return;
  try {
    const n = new Notification(title, { body, tag });
    n.onclick = () => { window.focus(); if (onOpen) onOpen(); n.close(); };
  } catch { /* some browsers allow notifications from a service worker only */ }
}
