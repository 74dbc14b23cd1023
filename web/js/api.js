// The HTTP/JSON API through Envoy (same origin): the session, calls, errors in words, list pages.

const SESSION_KEY = "tweetmesh.session";

/** A refused or failed call: the HTTP status and the words of the JSON error body's `message`. */
export class ApiError extends Error {
  constructor(status, message, { code = 0, details = [], retryAfter = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter; // seconds, from Retry-After (429, 503)
  }

  /** What to show a person: the server's message, and when to try again if it said. */
  get words() {
    const wait = this.retryAfter ? ` Try again in ${this.retryAfter} s.` : "";
    return `${this.message}${wait}`;
  }
}

/** The signed-in account ({token, user}) kept across reloads, or null. */
export function session() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

export function saveSession(value) {
  if (value) localStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else localStorage.removeItem(SESSION_KEY);
}

function retryAfterSeconds(response) {
  const raw = response.headers.get("retry-after");
  const seconds = raw === null ? NaN : Number.parseInt(raw, 10);
  return Number.isFinite(seconds) ? seconds : null;
}

/** Turns a non-2xx response into an ApiError carrying the body's message ({code, message, details}). */
export async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy in between): say what we know.
  }
  const message = body?.message || `the server answered ${response.status} ${response.statusText}`.trim();
  return new ApiError(response.status, message, {
    code: body?.code ?? 0,
    details: body?.details ?? [],
    retryAfter: retryAfterSeconds(response),
  });
}

/** Headers of a call: JSON, and the bearer token when signed in. */
export function headers() {
  const found = { "content-type": "application/json" };
  const current = session();
  if (current?.token) found.authorization = `Bearer ${current.token}`;
  return found;
}

/** One call; resolves to the JSON answer or throws an ApiError (status 0: the network failed). */
export async function call(method, path, body = undefined) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "Could not reach the server. Check your connection and try again.");
  }
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** A list with page tokens: `next()` fetches the following page ({items, done}). */
export function pages(path, field, pageSize = 20) {
  let token = "";
  let done = false;
  return {
    get done() {
      return done;
    },
    async next() {
      const sep = path.includes("?") ? "&" : "?";
      const query = `page_size=${pageSize}${token ? `&page_token=${encodeURIComponent(token)}` : ""}`;
      const answer = await call("GET", `${path}${sep}${query}`);
      token = answer.next_page_token || "";
      done = token === "";
      return { items: answer[field] || [], done, answer };
    },
  };
}

// The API, one function per call the client makes.
const id = encodeURIComponent;
export const signUp = (handle, displayName, password) =>
  call("POST", "/v1/users", { handle, display_name: displayName, password });
export const signIn = (handle, password) => call("POST", "/v1/sessions", { handle, password });
export const signOut = () => call("DELETE", "/v1/sessions/current");
export const userByHandle = (handle) => call("GET", `/v1/handles/${id(handle)}`);
export const follow = (userId) => call("POST", `/v1/users/${id(userId)}:follow`, {});
export const unfollow = (userId) => call("POST", `/v1/users/${id(userId)}:unfollow`, {});
export const post = (text, replyTo = "") =>
  call("POST", "/v1/tweets", { text, reply_to_tweet_id: replyTo, request_id: crypto.randomUUID() });
export const getTweet = (tweetId) => call("GET", `/v1/tweets/${id(tweetId)}`);
export const deleteTweet = (tweetId) => call("DELETE", `/v1/tweets/${id(tweetId)}`);
export const like = (tweetId) => call("POST", `/v1/tweets/${id(tweetId)}:like`, {});
export const unlike = (tweetId) => call("POST", `/v1/tweets/${id(tweetId)}:unlike`, {});
export const retweet = (tweetId) => call("POST", `/v1/tweets/${id(tweetId)}:retweet`, {});
export const unretweet = (tweetId) => call("POST", `/v1/tweets/${id(tweetId)}:unretweet`, {});
export const homePages = () => pages("/v1/timelines/home", "tweets");
export const globalPages = () => pages("/v1/timelines/global", "tweets");
export const userTweetPages = (userId) => pages(`/v1/users/${id(userId)}/tweets`, "tweets");
export const replyPages = (tweetId) => pages(`/v1/tweets/${id(tweetId)}/replies`, "tweets");
export const followingPages = (userId) => pages(`/v1/users/${id(userId)}/following`, "users", 100);
export const tweetSearchPages = (query) => pages(`/v1/tweets:search?query=${id(query)}`, "tweets");
export const userSearchPages = (query) => pages(`/v1/users:search?query=${id(query)}`, "users");
