/*
 * The browser demo and test page of notify-push-gateway.
 *
 * It uses @nextcloud/notify_push exactly as a Nextcloud web app does: the
 * library reads the push server's endpoints from the capabilities that the
 * page carries (the `initial-state-core-capabilities` element), fetches a
 * pre-auth token from the same-origin `pre_auth` endpoint with the request
 * token of the page head, logs in with an empty username and that token,
 * and reconnects by itself. The page adds nothing to that; it only watches
 * the library's sockets and records every event it hands to the listeners.
 *
 * What the page records, for people (the table) and for the browser tests
 * (`window.pushDemo`):
 *   events:  {n, time, type, body, socket} for every listener call
 *   sockets: one entry per websocket the library opened: url, frames sent,
 *            the server's answer to the login, when it opened, logged in and
 *            closed, and the close code and reason
 *   status:  'starting', 'connecting', 'connected', 'refused', 'reconnecting'
 *            or 'unavailable' (no notify_push capabilities)
 */

import { listen } from '@nextcloud/notify_push'
import './push-demo.css'

const config = JSON.parse(document.getElementById('push-demo-config').textContent)
const FILE_KINDS = ['notify_file', 'notify_file_id', 'notify_activity', 'notify_notification']
const SHOWN_ROWS = 500

const state = {
    user: config.user,
    events: [],
    sockets: [],
    status: 'starting',
    available: null,
}
window.pushDemo = state

// The library opens its sockets with the global WebSocket: this subclass
// records what happens to each one and changes nothing.
const NativeWebSocket = window.WebSocket
class ObservedWebSocket extends NativeWebSocket {
    constructor(url, protocols) {
        super(url, protocols)
        const socket = {
            url: String(url),
            sent: [],
            answer: null,
            opened: null,
            authenticated: null,
            closed: null,
            code: null,
            reason: null,
        }
        this.demoRecord = socket
        state.sockets.push(socket)
        setStatus('connecting')
        this.addEventListener('open', () => {
            socket.opened = new Date().toISOString()
        })
        this.addEventListener('message', (message) => {
            if (socket.answer !== null) {
                return
            }
            socket.answer = String(message.data)
            if (socket.answer === 'authenticated') {
                socket.authenticated = new Date().toISOString()
                setStatus('connected')
                note(`socket ${state.sockets.indexOf(socket) + 1} logged in as ${config.user} with a pre-auth token`)
            } else {
                setStatus('refused')
                note(`socket ${state.sockets.indexOf(socket) + 1} refused: ${socket.answer}`)
            }
        })
        this.addEventListener('close', (event) => {
            socket.closed = new Date().toISOString()
            socket.code = event.code
            socket.reason = event.reason
            const reason = event.reason ? ` ${event.reason}` : ''
            note(`socket ${state.sockets.indexOf(socket) + 1} closed: ${event.code}${reason}`)
            if (state.sockets[state.sockets.length - 1] === socket) {
                setStatus('reconnecting')
            }
        })
    }

    send(data) {
        this.demoRecord.sent.push(typeof data === 'string' ? data : '<binary>')
        super.send(data)
    }
}
window.WebSocket = ObservedWebSocket

// ---- the view ----

function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag)
    for (const [name, value] of Object.entries(attributes)) {
        node.setAttribute(name, value)
    }
    node.append(...children)
    return node
}

const statusBadge = element('span', { class: 'status', id: 'status' })
const statusDetail = element('span', { class: 'status-detail', id: 'status-detail' })
const eventCount = element('span', { class: 'count', id: 'event-count' }, '0 events')
const rows = element('tbody', { id: 'events' })
const emptyRow = element(
    'tr',
    { class: 'empty' },
    element('td', { colspan: '3' }, 'Nothing yet. Run one of the commands on the right.'),
)
rows.append(emptyRow)

const STATUS_TEXT = {
    starting: 'starting',
    connecting: 'connecting',
    connected: 'connected',
    refused: 'login refused',
    reconnecting: 'reconnecting',
    unavailable: 'no push server',
}

function setStatus(status) {
    state.status = status
    statusBadge.textContent = STATUS_TEXT[status] ?? status
    statusBadge.dataset.status = status
    const last = state.sockets[state.sockets.length - 1]
    const count = state.sockets.length
    const which = count > 0 ? `socket ${count}` : 'no socket yet'
    let detail = ''
    if (status === 'connected') {
        detail = `as ${config.user}, through a pre-auth token · ${which}`
    } else if (status === 'refused' && last) {
        detail = `the server answered "${last.answer}" · ${which}`
    } else if (status === 'reconnecting' && last) {
        detail = `closed with ${last.code}${last.reason ? ` (${last.reason})` : ''}; the library retries by itself`
    } else if (status === 'unavailable') {
        detail = 'the capabilities name no notify_push endpoints'
    } else {
        detail = which
    }
    statusDetail.textContent = detail
}

function formatTime(date) {
    const pad = (n, width = 2) => String(n).padStart(width, '0')
    return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`
}

// A connection's login or close, shown in the log but not counted as an event.
function note(text) {
    emptyRow.remove()
    rows.prepend(
        element(
            'tr',
            { class: 'connection' },
            element('td', { class: 'time' }, formatTime(new Date())),
            element('td', { class: 'type' }, 'connection'),
            element('td', { class: 'body' }, text),
        ),
    )
}

function record(type, body) {
    const now = new Date()
    const event = {
        n: state.events.length + 1,
        time: now.toISOString(),
        type,
        body: body === undefined ? null : body,
        socket: state.sockets.length,
    }
    state.events.push(event)
    emptyRow.remove()
    const kind = FILE_KINDS.includes(type) ? type : 'custom'
    const row = element(
        'tr',
        { class: `event kind-${kind}` },
        element('td', { class: 'time' }, formatTime(now)),
        element('td', { class: 'type' }, element('code', {}, type)),
        element('td', { class: 'body' }, event.body === null ? '' : element('code', {}, JSON.stringify(event.body))),
    )
    rows.prepend(row)
    while (rows.children.length > SHOWN_ROWS) {
        rows.lastElementChild.remove()
    }
    eventCount.textContent = `${state.events.length} event${state.events.length === 1 ? '' : 's'}`
}

function commandCard({ label, note, command }) {
    const copy = element('button', { type: 'button', class: 'copy', title: 'Copy the command' }, 'copy')
    copy.addEventListener('click', async () => {
        try {
            await navigator.clipboard.writeText(command)
            copy.textContent = 'copied'
        } catch {
            copy.textContent = 'select it'
        }
        setTimeout(() => {
            copy.textContent = 'copy'
        }, 1500)
    })
    return element(
        'li',
        { class: 'command' },
        element('div', { class: 'command-head' }, element('span', { class: 'label' }, label), copy),
        note ? element('p', { class: 'note' }, note) : '',
        element('pre', {}, element('code', {}, command)),
    )
}

function render() {
    const root = document.getElementById('push-demo')
    root.replaceChildren(
        element(
            'header',
            {},
            element(
                'div',
                { class: 'title' },
                element('h1', {}, 'notify-push-gateway'),
                element('span', { class: 'subtitle' }, 'push events in the browser, live'),
            ),
            element('div', { class: 'who' }, element('span', { class: 'user' }, config.user), statusBadge, statusDetail),
        ),
        element(
            'main',
            {},
            element(
                'section',
                { class: 'log' },
                element('div', { class: 'section-head' }, element('h2', {}, 'Events, newest first'), eventCount),
                element(
                    'table',
                    {},
                    element(
                        'thead',
                        {},
                        element('tr', {}, element('th', {}, 'time'), element('th', {}, 'type'), element('th', {}, 'body')),
                    ),
                    rows,
                ),
            ),
            element(
                'aside',
                { class: 'commands' },
                element('h2', {}, 'Make one arrive'),
                element(
                    'p',
                    { class: 'note' },
                    'Each command publishes what Nextcloud publishes on that Redis channel. ',
                    `The page listens for the file, activity and notification events and for the custom messages ${config.customTypes.map((t) => `"${t}"`).join(', ')}.`,
                ),
                element('ol', {}, ...config.commands.map(commandCard)),
            ),
        ),
        element(
            'footer',
            {},
            `Push server ${config.websocket || '(not set up)'} · `,
            'A stand-in for a Nextcloud page, served by the stub Nextcloud of the tests: the user comes from ',
            element('code', {}, '?user='),
            ', with no password. ',
            'The client is @nextcloud/notify_push, as Nextcloud web apps use it.',
        ),
    )
}

render()
setStatus('starting')
for (const type of [...FILE_KINDS, ...config.customTypes]) {
    state.available = listen(type, record)
}
if (!state.available) {
    setStatus('unavailable')
}
