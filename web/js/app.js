// tweetmesh's web client: the views (one per hash route), the navigation and the tweet cards.
//
// To add a screen (notifications, say): write a view `async (params) => Node`, add it to ROUTES,
// and, if it belongs in the menu, to NAV. Tweets render in one place (tweetCard), so attachments
// such as images get one slot there. Text from the server is only ever set as textContent.

import * as api from "./api.js";
import { liveStream } from "./stream.js";

// ---- small DOM helpers

/** An element: h("button", {class: "x", onclick: f}, "text", child...). */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

const view = () => document.getElementById("view");
const signedIn = () => api.session() !== null;
const me = () => api.session()?.user;

/** Shows an error (or any message) in words in the page's alert region. */
function notify(message) {
  const notice = document.getElementById("notice");
  notice.textContent = message;
  notice.hidden = !message;
}

/** Runs an action of a button or form; its error is shown in words, the control re-enabled. */
async function act(control, action) {
  notify("");
  control.disabled = true;
  try {
    return await action();
  } catch (error) {
    notify(error instanceof api.ApiError ? error.words : `Something went wrong: ${error.message}`);
    if (error.status === 401 && signedIn()) {
      api.saveSession(null);
      renderNav();
    }
    return undefined;
  } finally {
    control.disabled = false;
  }
}

function field(label, props) {
  const inputId = `f-${props.name}`;
  return h("p", { class: "field" }, h("label", { for: inputId }, label), h("input", { id: inputId, ...props }));
}

function when(iso) {
  const date = new Date(iso);
  return h("time", { datetime: iso, title: date.toLocaleString() }, date.toLocaleString());
}

// ---- tweets

/** What the page knows the viewer did this session (the API has no per-viewer flags yet). */
const mine = { liked: new Set(), retweeted: new Set() };

function userLink(user) {
  return h("a", { href: `#/u/${encodeURIComponent(user.handle)}`, class: "who" },
    h("strong", {}, user.display_name || user.handle), " ", h("span", { class: "handle" }, `@${user.handle}`));
}

function toggle(label, pressed, count, onclick) {
  return h("button", { type: "button", class: "action", "aria-pressed": String(pressed), onclick },
    label, count === undefined ? "" : h("span", { class: "count" }, ` ${count}`));
}

/** Who wrote a tweet and when, and whether it was edited since (how often and when, in its title). */
function byline(tweet) {
  const edited = Number(tweet.edit_count) > 0 && h("span", {
    class: "edited", title: `Edited ${tweet.edit_count} time(s), last ${new Date(tweet.edit_time).toLocaleString()}`,
  }, "Edited");
  return h("header", {}, userLink(tweet.author), " · ",
    h("a", { href: `#/t/${tweet.tweet_id}`, class: "when" }, when(tweet.create_time)), edited && " · ", edited);
}

/** The tweet a quote shows, inside it (one level deep), or what became of it. */
function quotedTweet(tweet) {
  const quoted = tweet.quoted_tweet;
  if (tweet.quote_status === "QUOTE_STATUS_AVAILABLE" && quoted) {
    return h("blockquote", { class: "quoted", "aria-label": `Quoted tweet by @${quoted.author.handle}` },
      byline(quoted), h("p", { class: "quoted-text" }, quoted.text));
  }
  const gone = { QUOTE_STATUS_DELETED: "The quoted tweet was deleted.", QUOTE_STATUS_UNAVAILABLE: "The quoted tweet is unavailable." };
  return h("blockquote", { class: "quoted" },
    h("a", { href: `#/t/${tweet.quote_tweet_id}` }, gone[tweet.quote_status] || "Quoting a tweet"));
}

/** One tweet as an <article>: author, text, time, counts and the viewer's actions. */
function tweetCard(tweet, { onDeleted } = {}) {
  const original = tweet.retweeted_tweet && tweet.retweet_of_tweet_id ? tweet.retweeted_tweet : tweet;
  const card = h("article", { class: "tweet", dataset: { tweetId: tweet.tweet_id }, "aria-label": `Tweet by @${original.author.handle}` });
  if (original !== tweet) {
    card.append(h("p", { class: "context" }, "↻ ", userLink(tweet.author), " retweeted"));
  }
  card.append(byline(original));
  if (original.reply_to_tweet_id) {
    card.append(h("p", { class: "context" },
      h("a", { href: `#/t/${original.reply_to_tweet_id}` }, original.reply_to_deleted ? "In reply to a deleted tweet" : "In reply to a tweet")));
  }
  card.append(h("p", { class: "text" }, original.text));
  if (original.quote_tweet_id) card.append(quotedTweet(original));
  // Attachments (images, once the media API exists) go here, under the text.
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Tweet actions" });
  card.append(actions);
  const counts = { like: Number(original.like_count), retweet: Number(original.retweet_count) };

  actions.append(h("a", { class: "action", href: `#/t/${original.tweet_id}` }, "Reply", h("span", { class: "count" }, ` ${original.reply_count}`)));
  if (signedIn()) {
    const retweetButton = toggle("Retweet", mine.retweeted.has(original.tweet_id), counts.retweet, () =>
      act(retweetButton, async () => {
        const undo = mine.retweeted.has(original.tweet_id);
        await (undo ? api.unretweet(original.tweet_id) : api.retweet(original.tweet_id));
        const fresh = (await api.getTweet(original.tweet_id)).tweet;
        if (undo) mine.retweeted.delete(original.tweet_id); else mine.retweeted.add(original.tweet_id);
        setCount(retweetButton, fresh.retweet_count, !undo);
      }));
    retweetButton.dataset.kind = "retweet";
    const likeButton = toggle("Like", mine.liked.has(original.tweet_id), counts.like, () =>
      act(likeButton, async () => {
        const undo = mine.liked.has(original.tweet_id);
        const answer = await (undo ? api.unlike(original.tweet_id) : api.like(original.tweet_id));
        if (undo) mine.liked.delete(original.tweet_id); else mine.liked.add(original.tweet_id);
        setCount(likeButton, answer.tweet.like_count, !undo);
      }));
    likeButton.dataset.kind = "like";
    actions.append(retweetButton, likeButton);
    if (tweet.author.user_id === me()?.user_id) {
      const remove = h("button", { type: "button", class: "action danger", onclick: () =>
        act(remove, async () => {
          if (!window.confirm("Delete this tweet? This cannot be undone.")) return;
          await api.deleteTweet(tweet.tweet_id);
          card.remove();
          onDeleted?.(tweet.tweet_id);
          notify("");
        }) }, "Delete");
      actions.append(remove);
    }
  }
  return card;
}

function setCount(button, count, pressed) {
  button.setAttribute("aria-pressed", String(pressed));
  const shown = button.querySelector(".count");
  if (shown) shown.textContent = ` ${count}`;
}

/** A list of tweets from a page source, with a "More" button while pages remain. */
function tweetList(source, { label, empty = "Nothing here yet." } = {}) {
  const list = h("div", { class: "feed", role: "feed", "aria-label": label, "aria-busy": "false" });
  const more = h("button", { type: "button", class: "more", onclick: () => load() }, "More");
  const wrapper = h("section", { "aria-label": label }, list, more);
  const shown = new Set();
  async function load() {
    list.setAttribute("aria-busy", "true");
    const page = await act(more, () => source.next());
    list.setAttribute("aria-busy", "false");
    if (!page) return;
    for (const tweet of page.items) add(tweet, "end");
    more.hidden = page.done;
    if (shown.size === 0 && page.done) list.replaceChildren(h("p", { class: "empty" }, empty));
  }
  function add(tweet, where) {
    if (shown.has(tweet.tweet_id)) return false;
    list.querySelector(".empty")?.remove();
    shown.add(tweet.tweet_id);
    const card = tweetCard(tweet, { onDeleted: (id) => shown.delete(id) });
    if (where === "start") {
      // Newest first: a live tweet goes on top, one found again after a reconnect in its place.
      const older = [...list.querySelectorAll("article.tweet")].find(
        (other) => BigInt(other.dataset.tweetId) < BigInt(tweet.tweet_id));
      list.insertBefore(card, older || null);
    } else {
      list.append(card);
    }
    return true;
  }
  /** An edited tweet, as it is now, replaces its card (a retweet of it keeps its own). */
  function update(tweet) {
    for (const card of list.querySelectorAll("article.tweet")) {
      if (card.dataset.tweetId === tweet.tweet_id) card.replaceWith(tweetCard(tweet, { onDeleted: (id) => shown.delete(id) }));
    }
  }
  function remove(tweetId) {
    shown.delete(tweetId);
    for (const card of list.querySelectorAll("article.tweet")) {
      if (card.dataset.tweetId === tweetId) card.remove();
    }
  }
  function newest() {
    return [...shown].sort((a, b) => (BigInt(b) > BigInt(a) ? 1 : -1))[0] || "";
  }
  return { node: wrapper, load, add, update, remove, newest };
}

// ---- the live part of a timeline view

let current = null; // what the view on screen must stop when it is left (a live stream)

function liveTimeline(path, list, firstPage) {
  const status = h("p", { class: "live", role: "status" }, "Connecting…");
  const announce = h("p", { class: "visually-hidden", "aria-live": "polite" });
  const stream = liveStream(path, {
    newest: () => list.newest(),
    onReconnect: async () => {
      const page = await firstPage().next().catch(() => null);
      for (const tweet of (page?.items || []).reverse()) list.add(tweet, "start");
    },
    onEvent: (event) => {
      if (event.tweet && list.add(event.tweet, "start")) {
        announce.textContent = `New tweet from @${event.tweet.author.handle}`;
      } else if (event.update) {
        list.update(event.update);
      } else if (event.deletion) {
        list.remove(event.deletion.tweet_id);
      }
    },
    onState: (state, detail) => {
      status.dataset.state = state;
      status.textContent = {
        connecting: "Connecting to live updates…",
        live: "● Live: new tweets appear here",
        waiting: detail ? `Live updates paused (${detail.why}); reconnecting in ${detail.seconds} s…` : "",
        stopped: detail ? `Live updates stopped: ${detail}` : "Live updates stopped.",
      }[state];
    },
  });
  current = stream;
  return h("div", {}, status, announce);
}

// ---- views

function heading(text) {
  return h("h1", { tabindex: "-1" }, text);
}

function composer(list, { replyTo = "", placeholder = "What's happening?" } = {}) {
  const text = h("textarea", { id: "compose", name: "text", rows: "3", maxlength: "280", required: true, placeholder });
  const counter = h("span", { class: "counter", "aria-live": "polite" }, "280 left");
  text.addEventListener("input", () => {
    counter.textContent = `${280 - [...text.value.normalize("NFC")].length} left`;
  });
  const send = h("button", { type: "submit" }, replyTo ? "Reply" : "Post");
  const form = h("form", { class: "compose", "aria-label": replyTo ? "Reply" : "New tweet",
    onsubmit: (event) => {
      event.preventDefault();
      act(send, async () => {
        const { tweet } = await api.post(text.value, replyTo);
        text.value = "";
        counter.textContent = "280 left";
        list?.add(tweet, replyTo ? "end" : "start");
      });
    } },
  h("label", { for: "compose" }, replyTo ? "Your reply" : "New tweet"), text,
  h("div", { class: "row" }, counter, send));
  return form;
}

async function homeView() {
  if (!signedIn()) return welcomeView();
  const list = tweetList(api.homePages(), { label: "Home timeline", empty: "Your home timeline is empty: follow someone, or post." });
  const live = liveTimeline("/v1/timelines/home:stream", list, api.homePages);
  const node = h("div", {}, heading("Home"), composer(list), live, list.node);
  list.load();
  return node;
}

async function globalView() {
  const list = tweetList(api.globalPages(), { label: "Global timeline", empty: "Nobody has posted yet." });
  const live = liveTimeline("/v1/timelines/global:stream", list, api.globalPages);
  list.load();
  return h("div", {}, heading("Everyone"), live, list.node);
}

function welcomeView() {
  return h("div", { class: "welcome" }, heading("Welcome to tweetmesh"),
    h("p", {}, "Post, follow people and watch your timeline update live."),
    h("p", {}, h("a", { href: "#/signin", class: "button" }, "Sign in"), " ",
      h("a", { href: "#/signup", class: "button" }, "Create an account"), " ",
      h("a", { href: "#/global" }, "or read what everyone posts")));
}

function signInView() {
  const send = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { "aria-label": "Sign in", onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(form);
    act(send, async () => {
      const answer = await api.signIn(data.get("handle"), data.get("password"));
      api.saveSession({ token: answer.token, user: answer.user });
      renderNav();
      location.hash = "#/";
    });
  } },
  field("Handle", { name: "handle", autocomplete: "username", required: true, maxlength: "15" }),
  field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true }),
  send);
  return h("div", {}, heading("Sign in"), form, h("p", {}, "New here? ", h("a", { href: "#/signup" }, "Create an account")));
}

function signUpView() {
  const send = h("button", { type: "submit" }, "Create account");
  const form = h("form", { "aria-label": "Create an account", onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(form);
    act(send, async () => {
      await api.signUp(data.get("handle"), data.get("display_name"), data.get("password"));
      const answer = await api.signIn(data.get("handle"), data.get("password"));
      api.saveSession({ token: answer.token, user: answer.user });
      renderNav();
      location.hash = "#/";
    });
  } },
  field("Handle (letters, digits and _, up to 15)", { name: "handle", autocomplete: "username", required: true, maxlength: "15" }),
  field("Display name", { name: "display_name", autocomplete: "name", maxlength: "50" }),
  field("Password (at least 8 characters)", { name: "password", type: "password", autocomplete: "new-password", required: true }),
  send);
  return h("div", {}, heading("Create an account"), form);
}

async function isFollowing(userId) {
  const source = api.followingPages(me().user_id);
  for (let page = 0; page < 10; page += 1) {
    const { items, done } = await source.next();
    if (items.some((user) => user.user_id === userId)) return true;
    if (done) return false;
  }
  return false;
}

async function profileView({ handle }) {
  const { user } = await api.userByHandle(handle);
  const counts = h("p", { class: "counts" });
  const showCounts = (u) => {
    counts.textContent = `${u.tweets_count} tweets · ${u.followers_count} followers · ${u.following_count} following`;
  };
  showCounts(user);
  const parts = [heading(user.display_name || user.handle), h("p", { class: "handle" }, `@${user.handle}`)];
  if (user.bio) parts.push(h("p", { class: "bio" }, user.bio));
  parts.push(counts);
  if (signedIn() && me().user_id !== user.user_id) {
    let following = await isFollowing(user.user_id);
    const button = h("button", { type: "button", class: "follow", "aria-pressed": String(following) });
    const label = () => {
      button.textContent = following ? "Unfollow" : "Follow";
      button.setAttribute("aria-pressed", String(following));
    };
    label();
    button.addEventListener("click", () => act(button, async () => {
      const answer = await (following ? api.unfollow(user.user_id) : api.follow(user.user_id));
      following = !following;
      label();
      showCounts(answer.user);
    }));
    parts.push(h("p", {}, button));
  }
  const list = tweetList(api.userTweetPages(user.user_id), { label: `Tweets by @${user.handle}`, empty: "No tweets yet." });
  list.load();
  parts.push(h("h2", {}, "Tweets"), list.node);
  return h("div", { class: "profile" }, ...parts);
}

async function tweetView({ id }) {
  const { tweet } = await api.getTweet(id);
  const replies = tweetList(api.replyPages(id), { label: "Replies", empty: "No replies yet." });
  replies.load();
  const parts = [heading("Tweet"), tweetCard(tweet, { onDeleted: () => { location.hash = "#/"; } })];
  if (signedIn()) parts.push(composer(replies, { replyTo: id, placeholder: "Write your reply" }));
  parts.push(h("h2", {}, "Replies"), replies.node);
  return h("div", {}, ...parts);
}

async function searchView({ q = "" }) {
  const input = h("input", { id: "f-query", name: "q", type: "search", value: q, required: true, maxlength: "200" });
  const form = h("form", { role: "search", "aria-label": "Search", onsubmit: (event) => {
    event.preventDefault();
    location.hash = `#/search?q=${encodeURIComponent(input.value)}`;
  } }, h("label", { for: "f-query" }, "Search tweets and people"), input, h("button", { type: "submit" }, "Search"));
  const parts = [heading("Search"), form];
  if (q) {
    const people = h("ul", { class: "people", "aria-label": "People" });
    parts.push(h("h2", {}, "People"), people);
    const found = await api.userSearchPages(q.slice(0, 50)).next().catch((error) => {
      notify(error.words);
      return { items: [] };
    });
    people.append(...found.items.map((user) => h("li", {}, userLink(user))));
    if (!found.items.length) people.append(h("li", { class: "empty" }, "No one matches."));
    const tweets = tweetList(api.tweetSearchPages(q), { label: "Matching tweets", empty: "No tweets match." });
    tweets.load();
    parts.push(h("h2", {}, "Tweets"), tweets.node);
  }
  return h("div", {}, ...parts);
}

async function signOutView() {
  const control = h("button", { type: "button" });
  await act(control, async () => {
    try {
      await api.signOut();
    } finally {
      api.saveSession(null);
      renderNav();
    }
  });
  location.hash = "#/";
  return h("p", {}, "Signed out.");
}

// ---- routing and navigation

const ROUTES = [
  [/^\/$/, homeView],
  [/^\/global$/, globalView],
  [/^\/signin$/, signInView],
  [/^\/signup$/, signUpView],
  [/^\/signout$/, signOutView],
  [/^\/search$/, searchView],
  [/^\/u\/(?<handle>[^/]+)$/, profileView],
  [/^\/t\/(?<id>\d+)$/, tweetView],
];

/** The menu: [label, hash, shown when signed in?, shown when signed out?]. */
const NAV = [
  ["Home", "#/", true, true],
  ["Everyone", "#/global", true, true],
  ["Search", "#/search", true, true],
  ["My profile", () => `#/u/${encodeURIComponent(me().handle)}`, true, false],
  ["Sign in", "#/signin", false, true],
  ["Create account", "#/signup", false, true],
  ["Sign out", "#/signout", true, false],
];

function renderNav() {
  const list = document.getElementById("nav");
  const here = location.hash || "#/";
  const items = NAV.filter(([, , whenIn, whenOut]) => (signedIn() ? whenIn : whenOut)).map(([label, target]) => {
    const href = typeof target === "function" ? target() : target;
    return h("li", {}, h("a", { href, "aria-current": href === here.split("?")[0] ? "page" : false }, label));
  });
  list.replaceChildren(...items);
  if (signedIn()) list.append(h("li", { class: "whoami" }, `@${me().handle}`));
}

async function route() {
  current?.stop();
  current = null;
  notify("");
  const [path, query = ""] = (location.hash.slice(1) || "/").split("?");
  const params = Object.fromEntries(new URLSearchParams(query));
  const match = ROUTES.map(([pattern, render]) => [pattern.exec(decodeURI(path)), render]).find(([found]) => found);
  renderNav();
  let node;
  try {
    node = match ? await match[1]({ ...params, ...match[0].groups }) : h("div", {}, heading("Not found"), h("p", {}, "There is no such page."));
  } catch (error) {
    node = h("div", {}, heading("Could not load this page"), h("p", { class: "error" }, error.words || error.message));
  }
  view().replaceChildren(node);
  view().querySelector("h1")?.focus();
}

// The skip link moves focus to the content itself: as a "#main" link it would change the route.
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main").focus();
});
window.addEventListener("hashchange", route);
route();
