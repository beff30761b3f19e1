// Login and registration pages.

import { api } from '../api.js';
import { h, errorBox, showError, hideError, busy } from '../dom.js';

function field(label, input, hint) {
  const id = input.id;
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    input,
    hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null);
}

function authCard(title, form, footer) {
  return h('section', { class: 'auth-card card' },
    h('h1', {}, title),
    form,
    footer);
}

export function mountLogin(main, _params, ctx) {
  const err = errorBox('login-error');
  const notice = h('p', { class: 'notice', role: 'status', 'data-testid': 'login-notice', hidden: !ctx.loginNotice }, ctx.loginNotice || '');
  const username = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const prefill = sessionStorage.getItem('livechat.lastUsername');
  if (prefill) { username.value = prefill; sessionStorage.removeItem('livechat.lastUsername'); }
  const form = h('form', { class: 'form', 'data-testid': 'login-form', novalidate: true },
    notice,
    err,
    field('Username', username),
    field('Password', password),
    h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'login-submit' }, 'Log in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    hideError(err);
    notice.hidden = true;
    if (!username.value.trim() || !password.value) {
      showError(err, 'Enter your username and password.');
      (username.value.trim() ? password : username).focus();
      return;
    }
    try {
      const me = await busy(form, async () => {
        await api.login(username.value.trim(), password.value);
        return api.me();
      });
      await ctx.onLoggedIn(me);
    } catch (ex) {
      showError(err, ex.status === 401 && !ex.detail ? 'Wrong username or password.' : ex);
      password.focus();
      password.select();
    }
  });
  main.appendChild(h('div', { class: 'auth-wrap' },
    authCard('Log in to LiveChat', form,
      h('p', { class: 'muted center' }, 'No account yet? ', h('a', { href: '#/register', 'data-testid': 'to-register' }, 'Create one')))));
  (username.value ? password : username).focus();
}

export function mountRegister(main, _params, ctx) {
  const err = errorBox('register-error');
  const username = h('input', { id: 'reg-username', name: 'username', autocomplete: 'username', required: true, minlength: 3, maxlength: 32, autocapitalize: 'none', spellcheck: 'false', 'aria-describedby': 'reg-username-hint' });
  const password = h('input', { id: 'reg-password', name: 'password', type: 'password', autocomplete: 'new-password', required: true, 'aria-describedby': 'reg-password-hint' });
  const password2 = h('input', { id: 'reg-password2', name: 'password2', type: 'password', autocomplete: 'new-password', required: true });
  const form = h('form', { class: 'form', 'data-testid': 'register-form', novalidate: true },
    err,
    field('Username', username, '3 to 32 characters: letters, digits, _ . -'),
    field('Password', password, 'At least 4 characters.'),
    field('Repeat password', password2),
    h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'register-submit' }, 'Create account'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    hideError(err);
    const name = username.value.trim();
    if (!name || !password.value) {
      showError(err, 'Choose a username and a password.');
      (name ? password : username).focus();
      return;
    }
    if (password.value !== password2.value) {
      showError(err, 'The passwords do not match.');
      password2.focus();
      return;
    }
    let registered = false;
    try {
      const me = await busy(form, async () => {
        await api.register(name, password.value);
        registered = true;
        await api.login(name, password.value);
        return api.me();
      });
      await ctx.onLoggedIn(me);
    } catch (ex) {
      if (registered) {
        // The account exists; logging in failed (e.g. throttled). Let the user log in by hand.
        sessionStorage.setItem('livechat.lastUsername', name);
        ctx.navigate('#/login');
        return;
      }
      showError(err, ex);
      username.focus();
    }
  });
  main.appendChild(h('div', { class: 'auth-wrap' },
    authCard('Create your account', form,
      h('p', { class: 'muted center' }, 'Already registered? ', h('a', { href: '#/login', 'data-testid': 'to-login' }, 'Log in')))));
  username.focus();
}
