# Authentication of the registration API: ACS-style HMAC-SHA256 signing
# (x-ms-date, x-ms-content-sha256, Authorization), several keys.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use AcsTest::Reg;

no_shuffle();
no_root_location();
use_signed_requests(\&add_block_preprocessor);

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('http_config', <<'CONF') unless defined $block->http_config;
    acs_notify_registry registry;
CONF

    $block->set_value('config', <<'CONF') unless defined $block->config;
    location /acs/ {
        acs_notify_registrations;
        acs_notify_hmac_key dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=
                            c2Vjb25kLWFjY2Vzcy1rZXktMDEyMzQ1Njc4OWFiY2Q=;
    }
CONF
});

our $P = '/acs/users/8%3Aacs%3Aauth-user/devices/d1';

run_tests();

__DATA__

=== TEST 1: a correctly signed request is accepted
--- sreq eval
[[PUT => $main::P, reg_body()]]
--- error_code: 201



=== TEST 2: the second key is accepted too (rotation)
--- sreq eval
[[GET => $main::P, '', {key => $AcsTest::Reg::KEY2}]]
--- error_code: 200



=== TEST 3: an unknown key is refused with 401
--- sreq eval
[[GET => $main::P, '', {key => 'b3RoZXIta2V5LW5vdC1jb25maWd1cmVkLTAxMjM0NQ=='}]]
--- error_code: 401
--- response_body chomp
{"error":{"code":"Unauthorized","message":"signature mismatch"}}
--- error_log
acs_notify: registration rejected 401 Unauthorized: signature mismatch



=== TEST 4: no signature headers at all is 401
--- request
GET /acs/users/x/devices
--- error_code: 401
--- error_log
acs_notify: registration rejected 401 Unauthorized: missing x-ms-date, x-ms-content-sha256, host or authorization



=== TEST 5: a date over 5 minutes old is 401
--- sreq eval
[[GET => $main::P, '', {date => time - 301}]]
--- error_code: 401
--- error_log
acs_notify: registration rejected 401 Unauthorized: x-ms-date more than 5 minutes in the past



=== TEST 6: a date over 5 minutes ahead is 401
--- sreq eval
[[GET => $main::P, '', {date => time + 320}]]
--- error_code: 401
--- error_log
acs_notify: registration rejected 401 Unauthorized: x-ms-date more than 5 minutes in the future



=== TEST 7: a date within the window is accepted
--- sreq eval
[[GET => $main::P, '', {date => time - 240}], [GET => $main::P, '', {date => time + 240}]]
--- error_code eval
[200, 200]



=== TEST 8: a date that is not RFC 1123 is 401
--- sreq eval
[[GET => $main::P, '', {date => '2026-11-28T01:00:00Z'}]]
--- error_code: 401
--- error_log
acs_notify: registration rejected 401 Unauthorized: x-ms-date is not an RFC 1123 date



=== TEST 9: a body other than the signed one is 401
--- sreq eval
[[PUT => $main::P, reg_body(platform => 'apns-voip'), {sign_body => reg_body()}]]
--- error_code: 401
--- error_log
acs_notify: registration rejected 401 Unauthorized: body does not match x-ms-content-sha256



=== TEST 10: a signature for another path is 401
--- request eval
"GET /acs/users/8%3Aacs%3Aother/devices"
--- more_headers eval
AcsTest::Reg::signed_headers('GET', '/acs/users/8%3Aacs%3Aauth-user/devices', '')
--- error_code: 401
--- error_log
acs_notify: registration rejected 401 Unauthorized: signature mismatch



=== TEST 11: a signature for another method is 401
--- request eval
"DELETE $main::P"
--- more_headers eval
AcsTest::Reg::signed_headers('GET', $main::P, '')
--- error_code: 401



=== TEST 12: a signature for another host is 401
--- sreq eval
[[GET => $main::P, '', {host => 'evil.example'}]]
--- error_code: 401



=== TEST 13: the query string is part of the signed path
--- request eval
["GET $main::P?api-version=2024-01-01", "GET $main::P?api-version=2024-01-01"]
--- more_headers eval
[AcsTest::Reg::signed_headers('GET', "$main::P?api-version=2024-01-01", ''),
 AcsTest::Reg::signed_headers('GET', $main::P, '')]
--- error_code eval
[200, 401]



=== TEST 14: another authorization scheme is 401
--- request eval
"GET $main::P"
--- more_headers eval
my $h = AcsTest::Reg::signed_headers('GET', $main::P, '');
$h =~ s/Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256/Authorization: HMAC-SHA256 SignedHeaders=host;x-ms-date;x-ms-content-sha256/;
$h
--- error_code: 401
--- error_log
acs_notify: registration rejected 401 Unauthorized: authorization is not HMAC-SHA256 with the signed headers x-ms-date;host;x-ms-content-sha256



=== TEST 15: a malformed signature is 401
--- request eval
"GET $main::P"
--- more_headers eval
my $h = AcsTest::Reg::signed_headers('GET', $main::P, '');
$h =~ s/Signature=\S+/Signature=abc/;
$h
--- error_code: 401
--- error_log
acs_notify: registration rejected 401 Unauthorized: malformed signature



=== TEST 16: authentication comes before validation of the ids
--- request
GET /acs/users/x/devices/bad%20id
--- error_code: 401
--- response_body_like
"code":"Unauthorized"



=== TEST 17: refusals are logged at acs_notify_log_level
--- config
    location /acs/ {
        acs_notify_registrations;
        acs_notify_hmac_key dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=;
        acs_notify_log_level warn;
    }
--- request
GET /acs/users/x/devices
--- error_code: 401
--- error_log
[warn]
registration rejected 401



=== TEST 18: requests signed by Microsoft's own SDK policy are accepted
--- request eval
["PUT /acs/users/8%3Aacs%3Asdk-user/devices/sdk-1\n" . reg_body(platform => 'fcmv1', handle => $AcsTest::Reg::FCM),
 "GET /acs/users/8%3Aacs%3Asdk-user/devices",
 "DELETE /acs/users/8%3Aacs%3Asdk-user/devices/sdk-1"]
--- more_headers eval
[official_headers('PUT', '/acs/users/8%3Aacs%3Asdk-user/devices/sdk-1', reg_body(platform => 'fcmv1', handle => $AcsTest::Reg::FCM)),
 official_headers('GET', '/acs/users/8%3Aacs%3Asdk-user/devices'),
 official_headers('DELETE', '/acs/users/8%3Aacs%3Asdk-user/devices/sdk-1', '', key => $AcsTest::Reg::KEY2)]
--- error_code eval
[201, 200, 204]
--- response_body_like eval
[qr/"rawId":"8:acs:sdk-user"/, qr/"deviceId":"sdk-1"/, ""]



=== TEST 19: the SDK's signature with a tampered body, path or key is refused
--- request eval
["PUT /acs/users/8%3Aacs%3Asdk-user/devices/sdk-2\n" . reg_body(platform => 'apns-voip'),
 "GET /acs/users/8%3Aacs%3Aother-user/devices",
 "GET /acs/users/8%3Aacs%3Asdk-user/devices"]
--- more_headers eval
[official_headers('PUT', '/acs/users/8%3Aacs%3Asdk-user/devices/sdk-2', reg_body()),
 official_headers('GET', '/acs/users/8%3Aacs%3Asdk-user/devices'),
 official_headers('GET', '/acs/users/8%3Aacs%3Asdk-user/devices', '', key => 'b3RoZXIta2V5LW5vdC1jb25maWd1cmVkLTAxMjM0NQ==')]
--- error_code eval
[401, 401, 401]
--- error_log
body does not match x-ms-content-sha256
signature mismatch



=== TEST 20: a date more than 5 minutes off in the SDK's signature is refused
--- request eval
"GET /acs/users/8%3Aacs%3Asdk-user/devices"
--- more_headers eval
my $h = official_headers('GET', '/acs/users/8%3Aacs%3Asdk-user/devices');
my $old = AcsTest::Hmac::rfc1123(time - 600);
$h =~ s/^x-ms-date: .*$/x-ms-date: $old/m;
$h
--- error_code: 401
--- error_log
x-ms-date more than 5 minutes in the past
