# The WWW-Authenticate challenge of a 401 from an Entra-protected location
# where nginx keeps a chain of such headers (since 1.23.0 headers of one
# name are linked by ->next: ngx_acs_webhook.c, ngx_acs_http.c): under
# `satisfy any`, where nginx hides the challenges of the access checks
# that failed by walking that chain, and behind `auth_request`, which
# copies the chain of a 401 to the client.  Each time the client must see
# exactly one challenge, the module's (the harness joins repeated headers
# with ", ", so a second one would show).
#
# The access phase runs its checks in this order: allow/deny, auth_basic,
# auth_request; an auth_request subrequest is a GET, so it reaches the
# webhook (POST only) through proxy_pass.  (`return` would answer before
# the access phase: the protected locations serve a file.)

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use AcsTest::Util;
use AcsTest::Entra;

my $keys = AcsTest::Entra::setup(($ENV{TEST_NGINX_SERVROOT} // 't/servroot')
                                 . '/entra-keys');
$ENV{TEST_NGINX_ENTRA} = $keys->{dir};

our $BAD = AcsTest::Entra::token(tamper => 'signature');
our $GOOD = AcsTest::Entra::token();
our $CHAT = fixture('eg-chat-message-received.json');

no_shuffle();
no_root_location();

add_block_preprocessor(sub {
    my $block = shift;

    # the Entra-protected webhook, reached directly or through /entra-check
    $block->set_value('config', <<'CONF' . ($block->config // ''));
    location = /eg {
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
    }
    location = /entra-check {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/eg;
        proxy_method POST;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header Content-Type application/json;
        proxy_set_header aeg-event-type Notification;
    }
    location = /granted { internal; return 204; }
CONF
});

run_tests();

__DATA__

=== TEST 1: a bad token at the webhook: one Bearer challenge
--- more_headers eval
"aeg-event-type: Notification\nContent-Type: application/json\nAuthorization: Bearer $::BAD"
--- request eval
"POST /eg\n$::CHAT"
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"
--- error_log
acs_notify: rejected 401 token: bad token signature



=== TEST 2: satisfy any: auth_basic's challenge is hidden, the webhook's 401 has its own alone
--- config
    location = /any {
        satisfy any;
        auth_basic "acs";
        auth_basic_user_file $TEST_NGINX_HTML_DIR/htpasswd;
        auth_request /granted;
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
    }
--- user_files
>>> htpasswd
user:{PLAIN}password
--- more_headers eval
"aeg-event-type: Notification\nContent-Type: application/json\nAuthorization: Bearer $::BAD"
--- request eval
"POST /any\n$::CHAT"
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"
--- error_log
no user/password was provided for basic authentication
acs_notify: rejected 401 token: bad token signature



=== TEST 3: satisfy any with a good token: 200 and no challenge at all
--- config
    location = /any {
        satisfy any;
        auth_basic "acs";
        auth_basic_user_file $TEST_NGINX_HTML_DIR/htpasswd;
        auth_request /granted;
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
    }
--- user_files
>>> htpasswd
user:{PLAIN}password
--- more_headers eval
"aeg-event-type: Notification\nContent-Type: application/json\nAuthorization: Bearer $::GOOD"
--- request eval
"POST /any\n$::CHAT"
--- error_code: 200
--- response_headers
!WWW-Authenticate
--- error_log
no user/password was provided for basic authentication
--- no_error_log
acs_notify: rejected



=== TEST 4: satisfy any, nothing grants: auth_basic's own challenge alone (the webhook never runs)
--- config
    location = /any {
        satisfy any;
        deny all;
        auth_basic "acs";
        auth_basic_user_file $TEST_NGINX_HTML_DIR/htpasswd;
        acs_notify_eventgrid;
        acs_notify_entra jwks=$TEST_NGINX_ENTRA/jwks.json
                         audience=api://acs-notify-test
                         tenant=72f988bf-86f1-41af-91ab-2d7cd011db47;
    }
--- user_files
>>> htpasswd
user:{PLAIN}password
--- more_headers eval
"aeg-event-type: Notification\nContent-Type: application/json\nAuthorization: Bearer $::BAD"
--- request eval
"POST /any\n$::CHAT"
--- error_code: 401
--- response_headers
WWW-Authenticate: Basic realm="acs"
--- no_error_log
acs_notify: rejected



=== TEST 5: behind auth_request, a bad token: the client gets the webhook's one challenge
--- config
    location = /protected.txt {
        auth_request /entra-check;
        root $TEST_NGINX_HTML_DIR;
    }
--- user_files
>>> protected.txt
in
--- more_headers eval
"Authorization: Bearer $::BAD"
--- request
GET /protected.txt
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"
--- error_log
acs_notify: rejected 401 token: bad token signature



=== TEST 6: behind auth_request, no token: one challenge
--- config
    location = /protected.txt {
        auth_request /entra-check;
        root $TEST_NGINX_HTML_DIR;
    }
--- user_files
>>> protected.txt
in
--- request
GET /protected.txt
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"
--- error_log
acs_notify: rejected 401 token: no bearer token



=== TEST 7: satisfy any, deny all and auth_request: the 401 wins with one challenge
--- config
    location = /protected.txt {
        satisfy any;
        deny all;
        auth_request /entra-check;
        root $TEST_NGINX_HTML_DIR;
    }
--- user_files
>>> protected.txt
in
--- more_headers eval
"Authorization: Bearer $::BAD"
--- request
GET /protected.txt
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"
--- error_log
acs_notify: rejected 401 token: bad token signature
