# The device registration API: PUT / GET / DELETE of a user's devices,
# signed like ACS's own REST calls, stored in LMDB.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use AcsTest::Reg;

no_shuffle();
no_root_location();
use_signed_requests(\&add_block_preprocessor);

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('http_config', <<'CONF') unless defined $block->http_config;
    acs_notify_registry registry max_devices=3;
CONF

    $block->set_value('config', <<'CONF') unless defined $block->config;
    location /acs/ {
        acs_notify_registrations;
        acs_notify_hmac_key dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=;
    }
CONF
});

our $U = '/acs/users/8%3Aacs%3Aresource_user-1';

run_tests();

__DATA__

=== TEST 1: a new registration is created with 201 and returned
--- sreq eval
[[PUT => "$main::U/devices/phone-1", reg_body(ttlSeconds => 3600)]]
--- error_code: 201
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/^\{"rawId":"8:acs:resource_user-1","deviceId":"phone-1","platform":"apns","handle":"(a1b2c3d4){8}","expiresAt":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\}$/
--- no_error_log
[error]
acs_notify: registration rejected



=== TEST 2: the registration is read back, alone and in the list
--- sreq eval
[[GET => "$main::U/devices/phone-1"], [GET => "$main::U/devices"]]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/^\{"rawId":"8:acs:resource_user-1","deviceId":"phone-1","platform":"apns",/,
 qr/^\{"value":\[\{"rawId":"8:acs:resource_user-1","deviceId":"phone-1",.*\}\]\}$/]



=== TEST 3: replacing a registration answers 200
--- sreq eval
[[PUT => "$main::U/devices/phone-1", reg_body(platform => 'fcmv1', handle => $AcsTest::Reg::FCM)],
 [GET => "$main::U/devices"]]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"platform":"fcmv1"/, qr/^\{"value":\[\{[^\]]*"platform":"fcmv1"[^\]]*\}\]\}$/]



=== TEST 4: every platform is accepted with a valid handle
--- sreq eval
[[PUT => "/acs/users/4%3A%2B14255550123/devices/a", reg_body(platform => 'apns-voip', handle => 'ABCDEF0123456789' x 4)],
 [PUT => "/acs/users/4%3A%2B14255550123/devices/b", reg_body(platform => 'wns', handle => 'https://wns2-par02p.notify.windows.com/w/?token=AwYAAAB')],
 [PUT => "/acs/users/4%3A%2B14255550123/devices/c", reg_body(platform => 'browser', handle => 'https://fcm.googleapis.com/fcm/send/dGhpcyBpcyBh', p256dh => 'BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM', auth => 'tBHItJI5svbpez7KI4CCXg')],
 [GET => "/acs/users/4%3A%2B14255550123/devices"]]
--- error_code eval
[201, 201, 201, 200]
--- response_body_like eval
[qr/"platform":"apns-voip"/, qr/"platform":"wns"/,
 qr/"platform":"browser".*"p256dh":"BNcR.*"auth":"tBHItJI5svbpez7KI4CCXg"/,
 qr/^\{"value":\[\{.*"deviceId":"a".*\},\{.*"deviceId":"b".*\},\{.*"deviceId":"c".*\}\]\}$/]



=== TEST 5: an unknown device is 404 with an Azure-style error
--- sreq eval
[[GET => "$main::U/devices/nope"]]
--- error_code: 404
--- response_body chomp
{"error":{"code":"NotFound","message":"no such device"}}



=== TEST 6: a user without devices has an empty list
--- sreq eval
[[GET => "/acs/users/8%3Aacs%3Anobody/devices"]]
--- error_code: 200
--- response_body chomp
{"value":[]}



=== TEST 7: deleting a device answers 204, then 404
--- sreq eval
[[PUT => "/acs/users/u7/devices/d1", reg_body()],
 [DELETE => "/acs/users/u7/devices/d1"],
 [DELETE => "/acs/users/u7/devices/d1"],
 [GET => "/acs/users/u7/devices/d1"]]
--- error_code eval
[201, 204, 404, 404]



=== TEST 8: deleting a user removes every device, and answers 204 always
--- sreq eval
[[PUT => "/acs/users/u8/devices/d1", reg_body()],
 [PUT => "/acs/users/u8/devices/d2", reg_body()],
 [PUT => "/acs/users/u8x/devices/d1", reg_body()],
 [DELETE => "/acs/users/u8"],
 [GET => "/acs/users/u8/devices"],
 [GET => "/acs/users/u8x/devices"],
 [DELETE => "/acs/users/u8"]]
--- error_code eval
[201, 201, 201, 204, 200, 200, 204]
--- response_body_like eval
["", "", "", "", qr/^\{"value":\[\]\}$/, qr/"rawId":"u8x"/, ""]



=== TEST 9: max_devices: a new device beyond it is 409, a replacement is not
--- sreq eval
[[PUT => "/acs/users/u9/devices/d1", reg_body()],
 [PUT => "/acs/users/u9/devices/d2", reg_body()],
 [PUT => "/acs/users/u9/devices/d3", reg_body()],
 [PUT => "/acs/users/u9/devices/d4", reg_body()],
 [PUT => "/acs/users/u9/devices/d2", reg_body(platform => 'fcmv1', handle => 'abc')]]
--- error_code eval
[201, 201, 201, 409, 200]
--- response_body_like eval
["", "", "", qr/^\{"error":\{"code":"TooManyDevices",/, ""]
--- error_log
acs_notify: registration rejected 409 TooManyDevices



=== TEST 10: a raw id may hold "/" when percent-encoded
--- sreq eval
[[PUT => "/acs/users/8%3Aorgid%3Aa%2Fb/devices/d1", reg_body()],
 [GET => "/acs/users/8%3Aorgid%3Aa%2Fb/devices/d1"]]
--- error_code eval
[201, 200]
--- response_body_like eval
[qr/"rawId":"8:orgid:a\/b"/, qr/"rawId":"8:orgid:a\/b"/]



=== TEST 11: the TTL defaults to the directive's and is bounded
--- sreq eval
[[PUT => "/acs/users/u11/devices/d1", reg_body(ttlSeconds => 299)],
 [PUT => "/acs/users/u11/devices/d1", reg_body(ttlSeconds => 15552001)],
 [PUT => "/acs/users/u11/devices/d1", reg_body(ttlSeconds => '"600"')],
 [PUT => "/acs/users/u11/devices/d1", reg_body(ttlSeconds => 300)],
 [PUT => "/acs/users/u11/devices/d1", reg_body(ttlSeconds => 15552000)]]
--- error_code eval
[400, 400, 400, 201, 200]
--- response_body_like eval
[qr/"code":"InvalidTtl","message":"\\"ttlSeconds\\" must be an integer from 300 to 15552000"/,
 qr/InvalidTtl/, qr/InvalidTtl/, "", ""]



=== TEST 12: invalid JSON is 400 InvalidJson
--- sreq eval
[[PUT => "/acs/users/u12/devices/d1", '{"platform":"apns",'],
 [PUT => "/acs/users/u12/devices/d1", '["apns"]'],
 [PUT => "/acs/users/u12/devices/d1", '', {content_type => 'application/json'}]]
--- error_code eval
[400, 400, 400]
--- response_body_like eval
[qr/InvalidJson/, qr/InvalidJson/, qr/InvalidJson/]



=== TEST 13: an unknown platform is 400 InvalidPlatform
--- sreq eval
[[PUT => "/acs/users/u13/devices/d1", reg_body(platform => 'gcm')],
 [PUT => "/acs/users/u13/devices/d1", reg_body(platform => undef)]]
--- error_code eval
[400, 400]
--- response_body_like eval
[qr/"code":"InvalidPlatform"/, qr/"code":"InvalidPlatform"/]
--- error_log
acs_notify: registration rejected 400 InvalidPlatform



=== TEST 14: bad handles are 400 InvalidHandle, per platform
--- sreq eval
[[PUT => "/acs/users/u14/devices/d1", reg_body(handle => 'a1b2' x 15)],
 [PUT => "/acs/users/u14/devices/d1", reg_body(handle => 'g' x 64)],
 [PUT => "/acs/users/u14/devices/d1", reg_body(handle => 'a' x 202)],
 [PUT => "/acs/users/u14/devices/d1", reg_body(platform => 'fcmv1', handle => 'bad token')],
 [PUT => "/acs/users/u14/devices/d1", reg_body(platform => 'fcmv1', handle => 'a' x 4097)],
 [PUT => "/acs/users/u14/devices/d1", reg_body(platform => 'wns', handle => 'http://wns.example/x')],
 [PUT => "/acs/users/u14/devices/d1", reg_body(platform => 'browser', handle => 'https://push.example/x')],
 [PUT => "/acs/users/u14/devices/d1", reg_body(handle => undef)]]
--- error_code eval
[(400) x 8]
--- response_body_like eval
[(qr/"code":"InvalidHandle"/) x 8]



=== TEST 15: a bad device id is 400 InvalidDeviceId
--- sreq eval
[[PUT => "/acs/users/u15/devices/bad%20id", reg_body()],
 [PUT => "/acs/users/u15/devices/" . ('d' x 65), reg_body()],
 [GET => "/acs/users/u15/devices/a%2Fb"]]
--- error_code eval
[400, 400, 400]
--- response_body_like eval
[(qr/"code":"InvalidDeviceId"/) x 3]



=== TEST 16: an undecodable or oversized raw id is 400 InvalidRawId
--- sreq eval
[[GET => "/acs/users/a%0Ab/devices"],
 [GET => "/acs/users/" . ('x' x 257) . "/devices"],
 [GET => "/acs/users/a%20b/devices"]]
--- error_code eval
[400, 400, 400]
--- response_body_like eval
[(qr/"code":"InvalidRawId"/) x 3]



=== TEST 17: unknown paths are 404, wrong methods 405 with Allow
--- sreq eval
[[GET => "/acs/users"], [GET => "/acs/things/x"], [GET => "/acs/users/u/devices/d/more"],
 [GET => "/acs/users/u17"], [POST => "/acs/users/u17/devices/d1", reg_body()],
 [PUT => "/acs/users/u17/devices", reg_body()]]
--- error_code eval
[404, 404, 404, 405, 405, 405]
--- response_headers eval
["", "", "", "Allow: GET, PUT, DELETE", "Allow: GET, PUT, DELETE", "Allow: GET, PUT, DELETE"]



=== TEST 18: a body over 16 KB is 413
--- sreq eval
[[PUT => "/acs/users/u18/devices/d1", reg_body(handle => 'a' x 17000)]]
--- error_code: 413
--- response_body_like
"code":"PayloadTooLarge"



=== TEST 19: a body that is not JSON by Content-Type is 415
--- request eval
"PUT /acs/users/u19/devices/d1\n" . reg_body()
--- more_headers eval
my $b = reg_body();
AcsTest::Reg::signed_headers('PUT', '/acs/users/u19/devices/d1', $b, content_type => 'text/plain')
--- error_code: 415
--- response_body_like
"code":"UnsupportedMediaType"



=== TEST 20: a registration survives a restart of nginx
--- sreq eval
[[GET => "$main::U/devices/phone-1"]]
--- error_code: 200
--- response_body_like
"deviceId":"phone-1"



=== TEST 21: the configuration needs a registry and a key
--- http_config
--- config
    location /acs/ {
        acs_notify_registrations;
        acs_notify_hmac_key dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=;
    }
--- must_die
--- error_log
acs_notify_registrations needs acs_notify_registry in the http block



=== TEST 22: a registrations location without a key is a configuration error
--- config
    location /acs/ { acs_notify_registrations; }
--- must_die
--- error_log
acs_notify_registrations needs acs_notify_hmac_key



=== TEST 23: an access key that is not base64 is a configuration error
--- config
    location /acs/ { acs_notify_registrations; acs_notify_hmac_key not-base64!; }
--- must_die
--- error_log
acs_notify_hmac_key: key 1 is not base64 of at least 16 bytes



=== TEST 24: a registry directory that cannot be created is a configuration error
--- http_config
    acs_notify_registry /proc/acs-registry;
--- must_die
--- error_log
acs_notify_registry: cannot create "/proc/acs-registry"



=== TEST 25: bad registry parameters are configuration errors
--- http_config
    acs_notify_registry registry ttl=200d;
--- must_die
--- error_log
acs_notify_registry: invalid ttl "200d", expected 1s to 180d



=== TEST 26: a NUL inside a JSON string is 400 InvalidJson, and nothing is stored
--- sreq eval
[[PUT => "/acs/users/u26/devices/d1",
  '{"platform":"wns","handle":"https://a/b\u0000\r\nX: y"}'],
 [PUT => "/acs/users/u26/devices/d2",
  '{"platform":"wns","handle":"https://a/b","note":"\u0000"}'],
 [GET => "/acs/users/u26/devices"],
 [PUT => "/acs/users/u26/devices/d3",
  '{"platform":"wns","handle":"https://a/b","note":"\\\\u0000"}']]
--- error_code eval
[400, 400, 200, 201]
--- response_body_like eval
[qr/^\{"error":\{"code":"InvalidJson","message":"the body holds U\+0000 in a string"\}\}$/,
 qr/"code":"InvalidJson"/, qr/^\{"value":\[\]\}$/, qr/"handle":"https:\/\/a\/b"/]
--- error_log
acs_notify: registration rejected 400 InvalidJson: the body holds U+0000 in a string
