// The WeChat scanner on the check-in page: inside WeChat's browser, with the
// Official Account configured, a 微信扫一扫 button opens WeChat's own scanner
// (wx.scanQRCode) and checks the scanned ticket in. Elsewhere it stays hidden
// and the page works as before.
(function () {
  "use strict";
  var JSSDK = "https://res.wx.qq.com/open/js/jweixin-1.6.0.js";
  var button = document.getElementById("wechat-scan");
  if (!button || !/MicroMessenger/i.test(navigator.userAgent)) return;

  // The camera page's entry point when it is there; else the plain form.
  function submit(text) {
    if (typeof window.checkinSubmit === "function") {
      window.checkinSubmit(text);
      return;
    }
    var input = document.getElementById("checkin-input");
    if (!input || !input.form) return;
    input.value = text;
    if (input.form.requestSubmit) input.form.requestSubmit();
    else input.form.submit();
  }

  function withJssdk(then) {
    if (window.wx) return then();
    var script = document.createElement("script");
    script.src = JSSDK;
    script.onload = then;
    document.head.appendChild(script);
  }

  // WeChat signs the page's URL without its fragment.
  var url = location.href.split("#")[0];
  fetch("/checkin/wechat-config?url=" + encodeURIComponent(url), { credentials: "same-origin" })
    .then(function (response) {
      // 404: no AppID/AppSecret here; anything else: no scanner today.
      return response.ok ? response.json() : null;
    })
    .then(function (config) {
      if (!config) return;
      withJssdk(function () {
        if (!window.wx) return;
        window.wx.config({
          debug: false,
          appId: config.appId,
          timestamp: config.timestamp,
          nonceStr: config.nonceStr,
          signature: config.signature,
          jsApiList: ["scanQRCode"]
        });
        window.wx.ready(function () {
          button.hidden = false;
        });
        window.wx.error(function () {
          button.hidden = true;
        });
      });
    })
    .catch(function () {});

  button.addEventListener("click", function () {
    window.wx.scanQRCode({
      needResult: 1,
      scanType: ["qrCode"],
      success: function (result) {
        if (result && result.resultStr) submit(result.resultStr);
      }
    });
  });
})();
