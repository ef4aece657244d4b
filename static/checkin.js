/* The scan screen: camera scanning with jsQR, and every scan (camera, typed,
 * USB scanner, or another script through window.checkinSubmit) posted with a
 * fresh nonce, so a retried request is answered once. Plain ES2017, no modules:
 * Chrome on Android, Safari on iOS and WeChat's browser run it as it is. */
(function () {
  'use strict';
  var screen = document.getElementById('scan-screen');
  if (!screen) return;
  var base = screen.getAttribute('data-base');
  var csrf = screen.getAttribute('data-csrf');
  var form = document.getElementById('checkin-form');
  var input = document.getElementById('checkin-input');
  var verdictBox = document.getElementById('verdict');
  var video = document.getElementById('camera-video');
  var cameraBox = document.getElementById('camera');
  var startButton = document.getElementById('camera-start');
  var torchButton = document.getElementById('camera-torch');
  var switchButton = document.getElementById('camera-switch');
  var note = document.getElementById('camera-note');

  // The same code seen again within this time is the same ticket still in front of the camera.
  var REPEAT_MS = 3000;
  var POLL_MS = 2500;
  var lastText = null;
  var lastAt = 0;
  var seq = 0;

  function nonce() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    var out = '';
    for (var i = 0; i < bytes.length; i++) out += ('0' + bytes[i].toString(16)).slice(-2);
    return out;
  }

  // Sound: two short tones, rising for a success, low for a refusal. The
  // context starts on the first touch (iOS allows audio only after one).
  var audio = null;
  function unlockAudio() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!audio) audio = new Ctx();
    if (audio.state === 'suspended') audio.resume();
  }
  document.addEventListener('touchstart', unlockAudio, { passive: true });
  document.addEventListener('click', unlockAudio);
  document.addEventListener('keydown', unlockAudio);
  function beep(good) {
    try {
      unlockAudio();
      if (!audio) return;
      var tones = good ? [880, 1320] : [330, 220];
      var length = good ? 0.12 : 0.22;
      var t = audio.currentTime;
      tones.forEach(function (freq, i) {
        var osc = audio.createOscillator();
        var gain = audio.createGain();
        osc.type = good ? 'sine' : 'square';
        osc.frequency.value = freq;
        gain.gain.value = 0.25;
        osc.connect(gain);
        gain.connect(audio.destination);
        var at = t + i * (length + 0.04);
        osc.start(at);
        osc.stop(at + length);
      });
    } catch (e) { /* no sound is no reason to stop scanning */ }
  }
  function buzz(good) {
    if (navigator.vibrate) {
      try { navigator.vibrate(good ? 120 : [200, 80, 200]); } catch (e) { /* not allowed here */ }
    }
  }

  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function showVerdict(good, headline, detail) {
    var box = el('div', 'result ' + (good ? 'good' : 'bad'), headline);
    box.setAttribute('role', 'status');
    box.appendChild(el('small', '', detail));
    verdictBox.innerHTML = '';
    verdictBox.appendChild(box);
    seq += 1;
    verdictBox.setAttribute('data-seq', String(seq));
    beep(good);
    buzz(good);
  }

  function showStatus(status) {
    document.getElementById('checked-in').textContent = String(status.checked_in);
    document.getElementById('booked').textContent = String(status.booked);
    var list = document.getElementById('recent');
    list.innerHTML = '';
    (status.recent || []).forEach(function (s) {
      var li = el('li', s.good ? 'ok' : 'error');
      li.appendChild(el('span', 'muted', s.time));
      li.appendChild(document.createTextNode(' ' + s.headline + ' '));
      li.appendChild(el('span', 'muted', s.detail));
      list.appendChild(li);
    });
  }

  function refusal(status) {
    if (status === 410) return ['链接已失效', '这个检票链接已过期或被吊销，请向管理员要新的链接'];
    if (status === 403) return ['页面已过期', '请刷新页面后重试'];
    if (status === 400) return ['无法识别', '扫到的不是电子票；如果一直这样，请刷新页面'];
    if (status === 404) return ['链接无效', '请向管理员要新的检票链接'];
    return ['检票失败', '服务器出了点问题（' + status + '），请重试'];
  }

  /* Checks in whatever was scanned or typed. Other scanners on this page (the
   * WeChat JS-SDK one) call it with the text they read. Resolves to the verdict. */
  function checkinSubmit(text) {
    text = String(text || '').trim();
    if (!text) return Promise.resolve(null);
    var body = new URLSearchParams();
    if (csrf) body.append('csrf', csrf);
    body.append('code', text);
    body.append('nonce', nonce());
    return fetch(base + '/scan', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Accept': 'application/json' },
      body: body.toString()
    }).then(function (r) {
      if (!r.ok) {
        var why = refusal(r.status);
        showVerdict(false, why[0], why[1]);
        return null;
      }
      return r.json().then(function (status) {
        showVerdict(status.verdict.good, status.verdict.headline, status.verdict.detail);
        showStatus(status);
        return status.verdict;
      });
    }, function () {
      showVerdict(false, '网络错误', '没有连上服务器，请再扫一次');
      return null;
    });
  }
  window.checkinSubmit = checkinSubmit;

  // Typing and USB scanners (which type the code and press Enter) go through the same call.
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var text = input.value;
    input.value = '';
    checkinSubmit(text);
    input.focus();
  });

  // Other gates move the counter too.
  function poll() {
    fetch(base + '/status', { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (status) { if (status) showStatus(status); }, function () { /* next time */ });
  }
  setInterval(poll, POLL_MS);

  // The camera.
  var stream = null;
  var track = null;
  var cameras = [];
  var cameraIndex = -1;
  var torchOn = false;
  var canvas = document.createElement('canvas');
  var context = canvas.getContext('2d');
  var scanning = false;

  function stopStream() {
    if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
    stream = null;
    track = null;
  }

  function startCamera(deviceId) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      note.textContent = '这个浏览器不能用摄像头扫码，请用扫码枪或输入票号。';
      return;
    }
    stopStream();
    var constraints = {
      audio: false,
      video: deviceId ? { deviceId: { exact: deviceId } } : { facingMode: { ideal: 'environment' } }
    };
    navigator.mediaDevices.getUserMedia(constraints).then(function (s) {
      stream = s;
      track = s.getVideoTracks()[0];
      video.srcObject = s;
      video.setAttribute('playsinline', '');
      video.muted = true;
      var playing = video.play();
      if (playing && playing.catch) playing.catch(function () { startButton.hidden = false; });
      cameraBox.hidden = false;
      startButton.hidden = true;
      note.textContent = '对准电子票上的二维码即可，无需点按。';
      offerTorch();
      offerSwitch();
      if (!scanning) {
        scanning = true;
        setTimeout(tick, 0);
      }
    }, function (e) {
      startButton.hidden = false;
      note.textContent = e && e.name === 'NotAllowedError'
        ? '没有摄像头权限：请允许使用摄像头，或用扫码枪、输入票号。'
        : '打不开摄像头，可以用扫码枪或输入票号。';
    });
  }

  function offerTorch() {
    torchOn = false;
    torchButton.classList.remove('on');
    var caps = track && track.getCapabilities ? track.getCapabilities() : {};
    torchButton.hidden = !caps.torch;
  }

  function offerSwitch() {
    if (!navigator.mediaDevices.enumerateDevices) return;
    navigator.mediaDevices.enumerateDevices().then(function (devices) {
      cameras = devices.filter(function (d) { return d.kind === 'videoinput'; });
      var current = track && track.getSettings ? track.getSettings().deviceId : null;
      cameraIndex = cameras.findIndex(function (d) { return d.deviceId === current; });
      switchButton.hidden = cameras.length < 2;
    });
  }

  torchButton.addEventListener('click', function () {
    if (!track) return;
    torchOn = !torchOn;
    track.applyConstraints({ advanced: [{ torch: torchOn }] }).then(function () {
      torchButton.classList.toggle('on', torchOn);
    }, function () { torchOn = false; torchButton.hidden = true; });
  });

  switchButton.addEventListener('click', function () {
    if (cameras.length < 2) return;
    cameraIndex = (cameraIndex + 1) % cameras.length;
    startCamera(cameras[cameraIndex].deviceId);
  });

  startButton.addEventListener('click', function () {
    unlockAudio();
    startCamera(null);
  });

  // Decode a frame every ~150 ms, downscaled: fast enough for a queue, light on a phone.
  function tick() {
    if (!stream) { scanning = false; return; }
    if (video.readyState >= 2 && video.videoWidth) {
      var scale = Math.min(1, 640 / Math.max(video.videoWidth, video.videoHeight));
      var w = Math.round(video.videoWidth * scale);
      var h = Math.round(video.videoHeight * scale);
      if (canvas.width !== w) canvas.width = w;
      if (canvas.height !== h) canvas.height = h;
      context.drawImage(video, 0, 0, w, h);
      var code = window.jsQR(context.getImageData(0, 0, w, h).data, w, h, { inversionAttempts: 'dontInvert' });
      if (code && code.data) {
        var now = Date.now();
        if (code.data !== lastText || now - lastAt > REPEAT_MS) {
          lastText = code.data;
          lastAt = now;
          checkinSubmit(code.data);
        }
      }
    }
    setTimeout(tick, 150);
  }

  if (window.jsQR) startCamera(null);
  else note.textContent = '扫码组件没有加载，请用扫码枪或输入票号。';
})();
